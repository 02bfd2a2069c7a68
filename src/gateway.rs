//! The live gateway: settings, upstream clients, and the current route table with its
//! descriptor pool, swapped atomically when a backend's reflected API changes.
//!
//! In: a validated config. Out: a [`Gateway`] the ingresses share. A request takes one
//! [`Snapshot`] when it starts and keeps it to the end, so a swap never disturbs it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use prost_reflect::DescriptorPool;

use crate::config::load::ConfigErrors;
use crate::config::validate::{DescriptorSource, Settings, Validated};
use crate::config::{Checked, Loaded};
use crate::descriptors::{self, BackendApi, FetchError};
use crate::router::build::BuildError;
use crate::router::{self, RouteTable};
use crate::upstream::grpc::GrpcUpstream;
use crate::upstream::http::HttpClient;

/// One consistent version of what the gateway serves.
#[derive(Debug)]
pub struct Snapshot {
    pub pool: DescriptorPool,
    pub table: RouteTable,
}

pub struct Gateway {
    pub settings: Settings,
    pub http_client: HttpClient,
    config: Validated,
    upstreams: HashMap<String, GrpcUpstream>,
    /// The last good API of every gRPC backend, in config order.
    apis: Mutex<Vec<BackendApi>>,
    snapshot: ArcSwap<Snapshot>,
    /// Turns true when the server starts shutting down; long-lived sessions (WebSockets, which
    /// outlive their HTTP connection) watch it to close themselves.
    closing: tokio::sync::watch::Sender<bool>,
    /// Those sessions, so that shutdown can wait for their close handshakes.
    sessions: tokio_util::task::TaskTracker,
}

/// Why the gateway could not start.
#[derive(Debug)]
pub enum StartError {
    /// Descriptors could not be read or fetched.
    Descriptors(Vec<FetchError>),
    /// The route table could not be built (located at config keys where possible).
    Routes(Vec<BuildError>),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines: Vec<String> = match self {
            StartError::Descriptors(errors) => errors.iter().map(ToString::to_string).collect(),
            StartError::Routes(errors) => errors.iter().map(ToString::to_string).collect(),
        };
        f.write_str(&lines.join("\n"))
    }
}

impl Gateway {
    /// Connect (lazily) to every upstream, learn every gRPC backend's API and build the table.
    pub async fn start(config: Validated) -> Result<Arc<Gateway>, StartError> {
        let mut upstreams = HashMap::new();
        let mut errors = Vec::new();
        for backend in &config.grpc {
            match GrpcUpstream::new(&backend.name, &backend.urls, backend.connect_timeout) {
                Ok(upstream) => {
                    upstreams.insert(backend.name.clone(), upstream);
                }
                Err(e) => errors.push(FetchError {
                    at: Some(format!("{}.url", backend.at)),
                    message: e.to_string(),
                    hint: None,
                }),
            }
        }
        if !errors.is_empty() {
            return Err(StartError::Descriptors(errors));
        }
        let fetches = config
            .grpc
            .iter()
            .map(|backend| descriptors::fetch(backend, &upstreams[&backend.name]));
        let mut apis = Vec::new();
        for result in futures_util::future::join_all(fetches).await {
            match result {
                Ok(api) => apis.push(api),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(StartError::Descriptors(errors));
        }
        let snapshot = build_snapshot(&config, &apis, &upstreams)?;
        Ok(Arc::new(Gateway {
            settings: config.settings.clone(),
            http_client: HttpClient::new(Duration::from_secs(5)),
            config,
            upstreams,
            apis: Mutex::new(apis),
            snapshot: ArcSwap::from_pointee(snapshot),
            closing: tokio::sync::watch::Sender::new(false),
            sessions: tokio_util::task::TaskTracker::new(),
        }))
    }

    /// The validated config the gateway was started with.
    pub fn config(&self) -> &Validated {
        &self.config
    }

    /// Start from a config checked as far as it goes: the start-up errors (unknown methods,
    /// bad bindings, unreachable backends...) join the config's own, so every error is
    /// reported at once. Nothing starts unless there are none.
    pub async fn start_checked(checked: Checked) -> Result<(Loaded, Arc<Gateway>), ConfigErrors> {
        let Checked { loaded, mut errors } = checked;
        let Some(loaded) = loaded else {
            return Err(ConfigErrors(errors));
        };
        match Gateway::start(loaded.validated.clone()).await {
            Ok(gateway) if errors.is_empty() => Ok((loaded, gateway)),
            Ok(_) => Err(ConfigErrors(errors)),
            Err(error) => {
                errors.extend(loaded.locate(&error).0);
                errors.sort_by_key(|e| (e.line.unwrap_or(0), e.column.unwrap_or(0)));
                Err(ConfigErrors(errors))
            }
        }
    }

    /// The current version; hold it for the whole request.
    /// Turns true once the server starts shutting down.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Long-lived sessions (those that outlive their HTTP connection, like WebSockets) run
    /// tracked here, so that shutdown waits for them, up to the grace period.
    pub fn sessions(&self) -> tokio_util::task::TaskTracker {
        self.sessions.clone()
    }

    /// Tell sessions to close; [`Gateway::sessions_closed`] resolves once they all have.
    pub(crate) fn begin_shutdown(&self) {
        self.closing.send_replace(true);
        self.sessions.close();
    }

    pub(crate) async fn sessions_closed(&self) {
        self.sessions.wait().await;
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Fetch one backend's API again; swap in a new snapshot when it changed (`Ok(true)`).
    /// On any failure the last good snapshot stays.
    pub async fn refresh(&self, backend_name: &str) -> Result<bool, String> {
        let backend = self
            .config
            .grpc
            .iter()
            .find(|b| b.name == backend_name)
            .ok_or_else(|| format!("no backend named {backend_name}"))?;
        let upstream = &self.upstreams[&backend.name];
        let api = descriptors::fetch(backend, upstream)
            .await
            .map_err(|e| e.to_string())?;
        // Compare, build and swap under the lock (no await inside): two refreshes of
        // different backends must not each swap in a table missing the other's change.
        let mut apis = self
            .apis
            .lock()
            .map_err(|_| "descriptor state poisoned".to_string())?;
        let mut next = apis.clone();
        let Some(slot) = next.iter_mut().find(|a| a.backend == api.backend) else {
            return Err(format!("no API recorded for {backend_name}"));
        };
        if *slot == api {
            return Ok(false);
        }
        *slot = api;
        let snapshot =
            build_snapshot(&self.config, &next, &self.upstreams).map_err(|e| e.to_string())?;
        self.snapshot.store(Arc::new(snapshot));
        *apis = next;
        Ok(true)
    }

    /// Refresh every reflection backend on its interval until `shutdown` resolves.
    pub fn spawn_refresh(self: &Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        for backend in &self.config.grpc {
            let DescriptorSource::Reflection {
                refresh: Some(every),
            } = backend.source
            else {
                continue;
            };
            let gateway = Arc::clone(self);
            let name = backend.name.clone();
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(every);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticker.tick().await;
                loop {
                    tokio::select! {
                        _ = ticker.tick() => {}
                        _ = shutdown.changed() => return,
                    }
                    match gateway.refresh(&name).await {
                        Ok(true) => {
                            tracing::info!(backend = %name, "Descriptors changed; serving the new API.")
                        }
                        Ok(false) => tracing::debug!(backend = %name, "Descriptors unchanged."),
                        Err(error) => {
                            tracing::warn!(backend = %name, %error, "Descriptor refresh failed; keeping the last good API.")
                        }
                    }
                }
            });
        }
    }
}

fn build_snapshot(
    config: &Validated,
    apis: &[BackendApi],
    upstreams: &HashMap<String, GrpcUpstream>,
) -> Result<Snapshot, StartError> {
    let pool = descriptors::merge(apis).map_err(|message| {
        StartError::Descriptors(vec![FetchError {
            at: None,
            message,
            hint: None,
        }])
    })?;
    let table = router::build::build(config, apis, &pool, upstreams).map_err(StartError::Routes)?;
    Ok(Snapshot { pool, table })
}
