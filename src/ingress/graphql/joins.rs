//! Declarative joins: a field added to a type and resolved by another gRPC method with
//! arguments taken from the parent (`Book.author` ← `authors.v1.Authors/GetAuthor` with
//! `id: "{authorId}"`).
//!
//! Every join goes through a per-operation [`DataLoader`], so N parents never make N sequential
//! calls: with a `batch` method the keys of one operation become ONE call; without, identical
//! requests are made once and distinct ones concurrently.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::dynamic::{Field, FieldFuture, FieldValue, TypeRef};

use super::reply::ReplyReader;
use super::schema::{field_error, Names};
use crate::config::validate::normalize_method;
use crate::config::JoinConfig;
use crate::error::Error;
use crate::gateway::Snapshot;
use crate::pipeline::Operation;
use crate::router::build::BuildError;
use crate::router::GrpcMethod;
use crate::transcode::json::{self, JsonOptions};

/// One argument: from the parent's JSON, or a literal.
#[derive(Debug, Clone)]
enum Source {
    Parent(String),
    Literal(String),
}

#[derive(Debug)]
pub(crate) struct Batch {
    method: Arc<GrpcMethod>,
    reader: ReplyReader,
    argument: String,
    results: String,
    key: String,
}

#[derive(Debug)]
pub(crate) struct Join {
    pub(crate) index: usize,
    pub(crate) on: String,
    pub(crate) field: String,
    pub(crate) method: Arc<GrpcMethod>,
    reader: ReplyReader,
    arguments: Vec<(String, Source)>,
    batch: Option<Batch>,
    description: Option<String>,
    pub(crate) at: String,
}

fn method(
    snapshot: &Snapshot,
    name: &str,
    at: String,
    errors: &mut Vec<BuildError>,
) -> Option<Arc<GrpcMethod>> {
    let found = normalize_method(name).and_then(|n| snapshot.table.methods.get(&n).cloned());
    if found.is_none() {
        let known: Vec<&str> = snapshot.table.methods.keys().map(String::as_str).collect();
        errors.push(BuildError {
            at: Some(at),
            message: format!("method {name:?} is not served by any gRPC upstream"),
            hint: crate::config::load::did_you_mean(name, known)
                .map(|m| format!("did you mean `{m}`?")),
        });
    }
    found
}

/// Check the configured joins against the snapshot's methods.
pub(crate) fn resolve(
    configs: &[JoinConfig],
    snapshot: &Snapshot,
    errors: &mut Vec<BuildError>,
) -> Vec<Arc<Join>> {
    let mut joins = Vec::new();
    for (index, config) in configs.iter().enumerate() {
        let at = format!("graphql.joins[{index}]");
        let Some(target) = method(snapshot, &config.grpc, format!("{at}.grpc"), errors) else {
            continue;
        };
        if target.descriptor.is_client_streaming() || target.descriptor.is_server_streaming() {
            errors.push(BuildError {
                at: Some(format!("{at}.grpc")),
                message: "a join needs a unary method".into(),
                hint: None,
            });
            continue;
        }
        let input = target.descriptor.input();
        let mut arguments = Vec::new();
        for (name, value) in &config.arguments {
            let Some(field) = input
                .fields()
                .find(|f| f.json_name() == name || f.name() == name)
            else {
                errors.push(BuildError {
                    at: Some(format!("{at}.arguments.{name}")),
                    message: format!("{} has no field {name:?}", input.full_name()),
                    hint: None,
                });
                continue;
            };
            let source = match value.strip_prefix('{').and_then(|v| v.strip_suffix('}')) {
                Some(parent) => Source::Parent(parent.to_string()),
                None => Source::Literal(value.clone()),
            };
            arguments.push((field.json_name().to_string(), source));
        }
        let batch = match &config.batch {
            None => None,
            Some(b) => {
                if arguments.len() != 1 {
                    errors.push(BuildError {
                        at: Some(format!("{at}.batch")),
                        message: "a batched join takes exactly one argument (the key)".into(),
                        hint: None,
                    });
                    continue;
                }
                let Some(batch_method) =
                    method(snapshot, &b.grpc, format!("{at}.batch.grpc"), errors)
                else {
                    continue;
                };
                let has = |m: &prost_reflect::MessageDescriptor, f: &str| {
                    m.fields().any(|x| x.json_name() == f || x.name() == f)
                };
                let (bin, bout) = (
                    batch_method.descriptor.input(),
                    batch_method.descriptor.output(),
                );
                if !has(&bin, &b.argument)
                    || !has(&bout, &b.results)
                    || !has(&target.descriptor.output(), &b.key)
                {
                    errors.push(BuildError {
                        at: Some(format!("{at}.batch")),
                        message: format!(
                            "batch fields not found: argument {:?} in {}, results {:?} in {}, key {:?} in {}",
                            b.argument,
                            bin.full_name(),
                            b.results,
                            bout.full_name(),
                            b.key,
                            target.descriptor.output().full_name()
                        ),
                        hint: None,
                    });
                    continue;
                }
                let json_name = |m: &prost_reflect::MessageDescriptor, f: &str| {
                    m.fields()
                        .find(|x| x.json_name() == f || x.name() == f)
                        .map(|x| x.json_name().to_string())
                        .unwrap_or_default()
                };
                Some(Batch {
                    argument: json_name(&bin, &b.argument),
                    results: json_name(&bout, &b.results),
                    key: json_name(&target.descriptor.output(), &b.key),
                    reader: ReplyReader::new(&bout),
                    method: batch_method,
                })
            }
        };
        joins.push(Arc::new(Join {
            index,
            on: config.on.clone(),
            field: config.field.clone(),
            reader: ReplyReader::new(&target.descriptor.output()),
            method: target,
            arguments,
            batch,
            description: config.description.clone(),
            at,
        }));
    }
    joins
}

/// The field added to the parent type.
pub(crate) fn field(join: &Arc<Join>, names: &Names) -> Field {
    let ty = TypeRef::named(names_of(names, &join.method));
    let join_for_resolver = join.clone();
    let mut field = Field::new(join.field.clone(), ty, move |ctx| {
        let join = join_for_resolver.clone();
        FieldFuture::new(async move {
            let loaders = ctx.ctx.data::<JoinLoaders>()?;
            let parent = ctx.parent_value.try_downcast_ref::<serde_json::Value>()?;
            let mut request = serde_json::Map::new();
            for (name, source) in &join.arguments {
                let value = match source {
                    Source::Parent(key) => {
                        parent.get(key).cloned().unwrap_or(serde_json::Value::Null)
                    }
                    Source::Literal(text) => serde_json::Value::String(text.clone()),
                };
                if value.is_null() || value.as_str() == Some("") {
                    // No key on the parent: nothing to join.
                    return Ok(None);
                }
                request.insert(name.clone(), value);
            }
            let key = match &join.batch {
                Some(_) => match request.values().next() {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => return Ok(None),
                },
                None => serde_json::Value::Object(request).to_string(),
            };
            let Some(loader) = loaders.0.get(join.index) else {
                return Ok(None);
            };
            match loader.load_one(key).await {
                Ok(Some(Ok(value))) => Ok(Some(FieldValue::owned_any(value))),
                Ok(Some(Err(e))) | Err(e) => field_error(&ctx, &e),
                Ok(None) => Ok(None),
            }
        })
    });
    if let Some(description) = &join.description {
        field = field.description(description.clone());
    }
    field
}

fn names_of(names: &Names, method: &GrpcMethod) -> String {
    names_type(names, method.descriptor.output().full_name())
}

fn names_type(names: &Names, full: &str) -> String {
    super::schema::type_name(names, full)
}

/// One loader per join, per operation.
pub(crate) struct JoinLoaders(Vec<DataLoader<JoinLoader>>);

impl JoinLoaders {
    pub(crate) fn new(op: &Operation, joins: &[Arc<Join>]) -> JoinLoaders {
        JoinLoaders(
            joins
                .iter()
                .map(|join| {
                    DataLoader::new(
                        JoinLoader {
                            op: op.clone(),
                            join: join.clone(),
                        },
                        tokio::spawn,
                    )
                })
                .collect(),
        )
    }
}

pub(crate) struct JoinLoader {
    op: Operation,
    join: Arc<Join>,
}

type Loaded = Result<serde_json::Value, Arc<Error>>;

impl Loader<String> for JoinLoader {
    type Value = Loaded;
    type Error = Arc<Error>;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Loaded>, Arc<Error>> {
        match &self.join.batch {
            Some(batch) => self.load_batch(batch, keys).await,
            None => Ok(
                futures_util::future::join_all(keys.iter().map(|key| async move {
                    (key.clone(), self.load_one(key).await.map_err(Arc::new))
                }))
                .await
                .into_iter()
                .collect(),
            ),
        }
    }
}

impl JoinLoader {
    async fn call(
        &self,
        method: &GrpcMethod,
        reader: &ReplyReader,
        request: &serde_json::Value,
    ) -> Result<serde_json::Value, Error> {
        let bytes = serde_json::to_vec(request).map_err(|e| Error::internal(e.to_string()))?;
        let message =
            json::decode_message(&method.descriptor.input(), &bytes, &JsonOptions::default())?;
        let reply = self.op.unary_bytes(method, &message).await?;
        reader.read(method, reply, None)
    }

    async fn load_one(&self, key: &str) -> Result<serde_json::Value, Error> {
        let request: serde_json::Value =
            serde_json::from_str(key).map_err(|e| Error::internal(e.to_string()))?;
        self.call(&self.join.method, &self.join.reader, &request)
            .await
    }

    async fn load_batch(
        &self,
        batch: &Batch,
        keys: &[String],
    ) -> Result<HashMap<String, Loaded>, Arc<Error>> {
        let request = serde_json::json!({ batch.argument.clone(): keys });
        let reply = self
            .call(&batch.method, &batch.reader, &request)
            .await
            .map_err(Arc::new)?;
        let mut found = HashMap::new();
        if let Some(items) = reply.get(&batch.results).and_then(|r| r.as_array()) {
            for item in items {
                let key = match item.get(&batch.key) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => continue,
                };
                found.insert(key, Ok(item.clone()));
            }
        }
        Ok(found)
    }
}
