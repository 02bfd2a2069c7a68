//! The order of the stages, in one place: policies → route → dispatch (HTTP proxy, or
//! transcode + gRPC). Every ingress hands its normalized request here.
//!
//! In: a [`Request`]. Out: a [`Response`] or the [`Error`] for the ingress to render.

use crate::error::Error;
use crate::gateway::Gateway;
use crate::request::{Request, Response};
use crate::router::{self, Target};
use crate::{policy, transcode};

pub async fn serve(gateway: &Gateway, mut request: Request) -> Result<Response, Error> {
    policy::apply(&gateway.settings, &mut request)?;
    let snapshot = gateway.snapshot();
    match router::find(
        &snapshot.table,
        &request.method,
        request.host.as_deref(),
        &request.uri,
    )? {
        Target::Http {
            route,
            path_and_query,
        } => {
            route
                .upstream
                .forward(&gateway.http_client, request, &path_and_query)
                .await
        }
        Target::Grpc { binding, vars } => {
            transcode::rest::call(&gateway.settings, &snapshot.pool, binding, vars, request).await
        }
    }
}
