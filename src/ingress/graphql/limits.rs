//! Operation limits, all enforced before any upstream call: document size and batch size by
//! the transports, depth and complexity by async-graphql's validation, aliases and root fields
//! here, on the parsed document.
//!
//! Every transport runs the document [`Limits::document`] returns (set on the request with
//! `set_parsed_query`: the HTTP handler, and [`super::ws::Documents`] for WebSocket and SSE),
//! so async-graphql never parses a document itself.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, Selection, SelectionSet,
};
use async_graphql::{ServerError, ServerResult};

use crate::config::GraphqlLimitsConfig;

/// Parsed documents by query text: clients repeat the same documents with other variables, and
/// parsing is a quarter of a small operation's cost. Only documents that passed the limits are
/// kept.
type DocumentCache = Arc<Mutex<lru::LruCache<String, ExecutableDocument>>>;

const CACHED_DOCUMENTS: usize = 256;

#[derive(Clone)]
pub(crate) struct Limits {
    pub(crate) max_document_bytes: usize,
    pub(crate) max_depth: usize,
    pub(crate) max_aliases: usize,
    pub(crate) max_root_fields: usize,
    pub(crate) max_complexity: usize,
    pub(crate) max_batch: usize,
    documents: DocumentCache,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("max_document_bytes", &self.max_document_bytes)
            .field("max_depth", &self.max_depth)
            .field("max_aliases", &self.max_aliases)
            .field("max_root_fields", &self.max_root_fields)
            .field("max_complexity", &self.max_complexity)
            .field("max_batch", &self.max_batch)
            .finish()
    }
}

impl From<&GraphqlLimitsConfig> for Limits {
    fn from(c: &GraphqlLimitsConfig) -> Self {
        Limits {
            max_document_bytes: c.max_document_bytes,
            max_depth: c.max_depth,
            max_aliases: c.max_aliases,
            max_root_fields: c.max_root_fields,
            max_complexity: c.max_complexity,
            max_batch: c.max_batch,
            documents: Arc::new(Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(CACHED_DOCUMENTS).unwrap_or(NonZeroUsize::MIN),
            ))),
        }
    }
}

/// A limit error as GraphQL errors carry it.
pub(crate) fn limit_error(message: String, limit: &str) -> ServerError {
    let mut error = ServerError::new(message, None);
    let mut extensions = async_graphql::ErrorExtensionValues::default();
    extensions.set("code", "LIMIT_EXCEEDED");
    extensions.set("limit", limit);
    error.extensions = Some(extensions);
    error
}

impl Limits {
    /// The parsed document of `query`, checked against the size, root-field and alias limits;
    /// parsed once per distinct document (cached).
    pub(crate) fn document(&self, query: &str) -> ServerResult<ExecutableDocument> {
        if query.len() > self.max_document_bytes {
            return Err(limit_error(
                format!(
                    "the document is {} bytes; the limit is {}",
                    query.len(),
                    self.max_document_bytes
                ),
                "max_document_bytes",
            ));
        }
        if let Some(document) = self
            .documents
            .lock()
            .ok()
            .and_then(|mut c| c.get(query).cloned())
        {
            return Ok(document);
        }
        let document = async_graphql::parser::parse_query(query).map_err(ServerError::from)?;
        let operations: Vec<&SelectionSet> = match &document.operations {
            DocumentOperations::Single(op) => vec![&op.node.selection_set.node],
            DocumentOperations::Multiple(ops) => {
                ops.values().map(|op| &op.node.selection_set.node).collect()
            }
        };
        for set in operations {
            let roots = set.items.len();
            if roots > self.max_root_fields {
                return Err(limit_error(
                    format!(
                        "the operation selects {roots} root fields; the limit is {}",
                        self.max_root_fields
                    ),
                    "max_root_fields",
                ));
            }
        }
        let mut aliases = 0;
        let mut stack: Vec<&SelectionSet> = match &document.operations {
            DocumentOperations::Single(op) => vec![&op.node.selection_set.node],
            DocumentOperations::Multiple(ops) => {
                ops.values().map(|op| &op.node.selection_set.node).collect()
            }
        };
        stack.extend(
            document
                .fragments
                .values()
                .map(|f| &f.node.selection_set.node),
        );
        while let Some(set) = stack.pop() {
            for item in &set.items {
                match &item.node {
                    Selection::Field(field) => {
                        aliases += usize::from(field.node.alias.is_some());
                        stack.push(&field.node.selection_set.node);
                    }
                    Selection::InlineFragment(fragment) => {
                        stack.push(&fragment.node.selection_set.node)
                    }
                    Selection::FragmentSpread(_) => {}
                }
            }
        }
        if aliases > self.max_aliases {
            return Err(limit_error(
                format!(
                    "the document uses {aliases} aliases; the limit is {}",
                    self.max_aliases
                ),
                "max_aliases",
            ));
        }
        // async-graphql's validation walks every fragment spread as often as it is spread, so a
        // 1 KB document of fragments spreading the next one twice costs seconds of CPU. Such a
        // document selects far more fields than `max_complexity` allows (every field counts at
        // least 1), so it is refused here, counted with each fragment expanded only once.
        let ceiling = self.max_complexity.saturating_mul(EXPANSION_HEADROOM) as u64;
        let mut expanded = Expanded::new(&document);
        let operations: Vec<&SelectionSet> = match &document.operations {
            DocumentOperations::Single(op) => vec![&op.node.selection_set.node],
            DocumentOperations::Multiple(ops) => {
                ops.values().map(|op| &op.node.selection_set.node).collect()
            }
        };
        for set in operations {
            if expanded.fields(set) > ceiling {
                return Err(limit_error(
                    format!(
                        "the operation selects more than {ceiling} fields once its fragments \
                         are expanded; the complexity limit is {}",
                        self.max_complexity
                    ),
                    "max_complexity",
                ));
            }
        }
        if let Ok(mut cache) = self.documents.lock() {
            cache.put(query.to_string(), document.clone());
        }
        Ok(document)
    }
}

/// Documents selecting more than this many times `max_complexity` fields are refused before
/// validation; the ones in between get async-graphql's own complexity error.
const EXPANSION_HEADROOM: usize = 4;

/// Counts the fields an operation selects with its fragments expanded, each fragment counted
/// once and remembered (a fragment spreading itself, directly or not, counts 0 here: async-graphql
/// refuses those).
struct Expanded<'a> {
    document: &'a ExecutableDocument,
    counted: std::collections::HashMap<&'a str, u64>,
    visiting: std::collections::HashSet<&'a str>,
}

impl<'a> Expanded<'a> {
    fn new(document: &'a ExecutableDocument) -> Self {
        Expanded {
            document,
            counted: Default::default(),
            visiting: Default::default(),
        }
    }

    fn fields(&mut self, set: &'a SelectionSet) -> u64 {
        let mut total: u64 = 0;
        for item in &set.items {
            let count = match &item.node {
                Selection::Field(field) => {
                    1u64.saturating_add(self.fields(&field.node.selection_set.node))
                }
                Selection::InlineFragment(fragment) => {
                    self.fields(&fragment.node.selection_set.node)
                }
                Selection::FragmentSpread(spread) => {
                    self.fragment(spread.node.fragment_name.node.as_str())
                }
            };
            total = total.saturating_add(count);
        }
        total
    }

    fn fragment(&mut self, name: &'a str) -> u64 {
        if let Some(&count) = self.counted.get(name) {
            return count;
        }
        let Some((key, fragment)) = self.document.fragments.get_key_value(name) else {
            return 0;
        };
        let key = key.as_str();
        if !self.visiting.insert(key) {
            return 0;
        }
        let count = self.fields(&fragment.node.selection_set.node);
        self.visiting.remove(key);
        self.counted.insert(key, count);
        count
    }
}
