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
            Box::pin(
                route
                    .upstream
                    .forward(&gateway.http_client, request, &path_and_query),
            )
            .await
        }
        Target::Grpc { binding, vars } => {
            // Boxed, like the forward above: the call's future is kilobytes, and every
            // future that holds it inline (up to the connection's) is copied when it starts.
            Box::pin(transcode::rest::call(
                &gateway.settings,
                &snapshot.pool,
                binding,
                vars,
                request,
            ))
            .await
        }
    }
}

/// One downstream operation that may make several upstream calls (a GraphQL operation, a
/// WebSocket subscription): the policies already ran on its [`Request`]; every call it makes
/// forwards its metadata and respects its deadline.
#[derive(Clone)]
pub struct Operation {
    pub gateway: std::sync::Arc<Gateway>,
    pub snapshot: std::sync::Arc<crate::gateway::Snapshot>,
    pub request_id: String,
    pub headers: http::HeaderMap,
    pub deadline: Option<std::time::Instant>,
}

impl Operation {
    /// Run the policies on `request` and keep what later calls need from it.
    pub fn begin(
        gateway: std::sync::Arc<Gateway>,
        mut request: Request,
    ) -> Result<Operation, Error> {
        policy::apply(&gateway.settings, &mut request)?;
        Ok(Operation::after_policies(gateway, request))
    }

    /// For an ingress that ran [`policy::apply`] itself (it had to read the policed body
    /// first): keep what later calls need from `request`.
    pub fn after_policies(gateway: std::sync::Arc<Gateway>, request: Request) -> Operation {
        let snapshot = gateway.snapshot();
        Operation {
            gateway,
            snapshot,
            request_id: request.id,
            headers: request.headers,
            deadline: request.deadline,
        }
    }

    fn call(
        &self,
        method: &crate::router::GrpcMethod,
        message: &prost_reflect::DynamicMessage,
    ) -> crate::upstream::grpc::GrpcCall {
        let deadline = match (self.deadline, method.timeout) {
            (Some(d), Some(t)) => Some(d.min(std::time::Instant::now() + t)),
            (d, t) => d.or_else(|| t.map(|t| std::time::Instant::now() + t)),
        };
        let framed =
            crate::upstream::grpc::framed(|out| transcode::encode::encode_to(message, out));
        crate::upstream::grpc::GrpcCall {
            path: method.path.clone(),
            metadata: transcode::rest::forwarded_metadata(
                &self.gateway.settings,
                &self.headers,
                &self.request_id,
                &method.metadata,
            ),
            deadline,
            messages: crate::upstream::grpc::RequestMessages::One(framed),
        }
    }

    /// A unary (or client-streaming with one message) call, its reply decoded.
    pub async fn unary(
        &self,
        method: &crate::router::GrpcMethod,
        message: &prost_reflect::DynamicMessage,
    ) -> Result<prost_reflect::DynamicMessage, Error> {
        let bytes = self.unary_bytes(method, message).await?;
        transcode::rest::decode(&method.descriptor.output(), bytes, method.upstream.name())
    }

    /// [`Operation::unary`], its reply still encoded (to render it from the wire bytes with
    /// [`transcode::wire`] and the method's plan).
    pub async fn unary_bytes(
        &self,
        method: &crate::router::GrpcMethod,
        message: &prost_reflect::DynamicMessage,
    ) -> Result<bytes::Bytes, Error> {
        let pool = &self.snapshot.pool;
        let reply = method
            .upstream
            .call(self.call(method, message))
            .await
            .map_err(|e| transcode::rest::with_details(e, pool))?;
        let mut messages = reply.messages;
        let first = messages
            .next()
            .await
            .map_err(|e| transcode::rest::with_details(e, pool))?;
        let bytes = first.ok_or_else(|| Error::UpstreamProtocol {
            upstream: method.upstream.name().to_string(),
            reason: "unary call ended with OK but no message".into(),
        })?;
        while messages
            .next()
            .await
            .map_err(|e| transcode::rest::with_details(e, pool))?
            .is_some()
        {}
        Ok(bytes)
    }

    /// A server-streaming call: its messages, decoded, ending at the first error. Dropping the
    /// stream cancels the upstream call.
    pub async fn server_stream(
        &self,
        method: &crate::router::GrpcMethod,
        message: &prost_reflect::DynamicMessage,
    ) -> Result<
        futures_util::stream::BoxStream<'static, Result<prost_reflect::DynamicMessage, Error>>,
        Error,
    > {
        use futures_util::StreamExt as _;
        let pool = self.snapshot.pool.clone();
        let reply = method
            .upstream
            .call(self.call(method, message))
            .await
            .map_err(|e| transcode::rest::with_details(e, &pool))?;
        let output = method.descriptor.output();
        let upstream = method.upstream.name().to_string();
        Ok(reply
            .messages
            .into_stream()
            .map(move |item| {
                item.map_err(|e| transcode::rest::with_details(e, &pool))
                    .and_then(|bytes| transcode::rest::decode(&output, bytes, &upstream))
            })
            .boxed())
    }
}
