//! Wires the stages together and serves them on a bound listener until shutdown.
//!
//! In: a bound [`TcpListener`], the [`Gateway`], and a shutdown future. Out: nothing until
//! shutdown: then new connections stop, in-flight requests get up to the grace period to
//! finish, and `run` returns.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::gateway::Gateway;
use crate::ingress;
use crate::router::build::BuildError;

/// The HTTP application: every ingress mounted on one router (GraphQL on its path, REST for
/// everything else). Fails when the GraphQL config does not fit the descriptors.
pub fn app(gateway: Arc<Gateway>) -> Result<axum::Router, Vec<BuildError>> {
    let mut router = axum::Router::<Arc<Gateway>>::new();
    if let Some(graphql) = ingress::graphql::GraphqlState::new(gateway.clone())? {
        router = router.merge(ingress::graphql::router(graphql));
    }
    Ok(router.fallback(ingress::rest::handle).with_state(gateway))
}

/// Serve until `shutdown` resolves, then drain for at most the configured grace period.
pub async fn run(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = gateway.settings.shutdown_grace;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    gateway.spawn_refresh(stop_rx.clone());
    let app = app(gateway)
        .map_err(|errors| {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            std::io::Error::other(lines.join("\n"))
        })?
        .into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("Shutting down: no new connections; draining in-flight requests.");
        let _ = stop_tx.send(true);
    });
    let mut stopped = stop_rx;
    let deadline = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server => result,
        () = deadline => {
            tracing::warn!(?grace, "Grace period over; closing the remaining connections.");
            Ok(())
        }
    }
}
