//! Body size limit: a declared `Content-Length` over the limit is refused before any byte is
//! read; a chunked body is counted while it streams and fails with [`TooLarge`] past the limit,
//! which every stage turns into a 413.

use http_body_util::BodyExt;

use crate::error::Error;
use crate::request::{Body, BoxError, Request};

/// The error a limited body yields once it passed the limit.
#[derive(Debug)]
pub struct TooLarge(pub u64);

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "request body is larger than the limit of {} bytes",
            self.0
        )
    }
}

impl std::error::Error for TooLarge {}

pub fn check(limit: u64, request: &mut Request) -> Result<(), Error> {
    let declared = request
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(Error::PayloadTooLarge { limit });
    }
    // Nothing to count in a body that is already over (a GET, a `Content-Length: 0`).
    if http_body::Body::is_end_stream(&request.body) {
        return Ok(());
    }
    let body = std::mem::take(&mut request.body);
    request.body = limited(body, limit);
    Ok(())
}

fn limited(body: Body, limit: u64) -> Body {
    let max = usize::try_from(limit).unwrap_or(usize::MAX);
    let limited = http_body_util::Limited::new(body, max).map_err(move |e: BoxError| -> BoxError {
        if e.is::<http_body_util::LengthLimitError>() {
            Box::new(TooLarge(limit))
        } else {
            e
        }
    });
    crate::request::body_from(limited)
}

/// Whether an error (or one of its causes) is a body over the limit.
pub fn is_too_large(error: &(dyn std::error::Error + 'static)) -> Option<u64> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(TooLarge(limit)) = e.downcast_ref::<TooLarge>() {
            return Some(*limit);
        }
        current = e.source();
    }
    None
}
