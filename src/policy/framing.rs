//! Framing rules of HTTP/1.1 that a gateway must enforce before routing (RFC 9112 §3.2):
//! an HTTP/1.1 request without a `Host` header, or any request with more than one, is a 400.
//! hyper leaves both to the server; a proxy that let them through would route (and forward)
//! by a host the client never stated, or by one of two.

use crate::error::Error;
use crate::request::Request;

pub fn check(request: &Request) -> Result<(), Error> {
    if request.host_lines > 1 {
        return Err(Error::invalid(
            "host",
            "the request has more than one Host header; send exactly one",
        ));
    }
    if request.host_lines == 0 && request.version == http::Version::HTTP_11 {
        return Err(Error::invalid(
            "host",
            "an HTTP/1.1 request must have a Host header",
        ));
    }
    Ok(())
}
