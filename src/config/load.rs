//! Loading a YAML configuration file into typed Rust structs, with precise errors.
//!
//! **In:** the raw YAML text of one configuration file and the name to show for it
//! in messages (usually its path), plus a lookup function for environment variables.
//!
//! **Out:** either the typed raw config `T` (any `serde::de::DeserializeOwned`, normally
//! structs marked `#[serde(deny_unknown_fields)]`) together with a [`SourceMap`] that
//! later semantic validation uses to point at the right line, or [`ConfigErrors`]: every
//! error found, each with `file:line:col`, the key path (`routes[3].grpc.method`), a
//! message and an optional hint (``did you mean `prefix`?``).
//!
//! # Pipeline
//!
//! 1. **Environment substitution** on the raw text ([`substitute_env`]): `${VAR}`,
//!    `${VAR:-default}` (default used when `VAR` is unset *or empty*), `$$` for a
//!    literal `$`; any other `$` is kept. The default is taken literally (no nested
//!    references). Values are inserted verbatim, so quote the reference (`"${X}"`) if the
//!    value may contain YAML syntax. A value containing a line break is an error, so line
//!    numbers never move; columns in later errors refer to the substituted text.
//!    Substitution also applies inside comments (write `$${` there).
//! 2. **YAML parsing** with yaml-rust2's event parser into a private tree that keeps each
//!    scalar's original text, plus a source map `path -> (line, column)` for every
//!    mapping key, sequence item and value. Plain scalars are typed by the YAML 1.2 core
//!    schema (`null`/`~`/empty, `true`/`True`/`TRUE`..., decimal/`0x`/`0o` integers,
//!    floats); quoted and block scalars, and `!!str`, are strings. `.inf`/`.nan` and
//!    integers beyond 64 bits are rejected. Aliases copy the anchored value; merge keys
//!    (`<<`) and other tags are not supported. Duplicate keys, complex keys, a second
//!    document and syntax errors are errors. An empty document is an empty mapping; a
//!    leading byte-order mark is ignored. An empty *value* is located at its key, an
//!    empty *sequence item* (`-` alone) at the next token (where yaml-rust2 marks it).
//! 3. **Deserialization** through a custom `serde::Deserializer` over that tree, wrapped
//!    in `serde_path_to_error` so each error carries its key path. A `String` field
//!    accepts any non-null scalar *as written* (`prefix: 8080` gives `"8080"`,
//!    `ratio: 1.50` gives `"1.50"`), while a number or bool field rejects a quoted
//!    string (`port: "8080"` is an error). Unknown fields/variants are reported at the
//!    offending key with a did-you-mean hint ([`did_you_mean`]); a missing field points
//!    at the parent mapping. After an error the offending key is dropped and
//!    deserialization starts again, so one run reports them all ([`parse_str_partial`]).
//!
//! Limitation: inside `#[serde(tag = ...)]`/`untagged`/`flatten` types serde buffers
//! the input, so there a `String` field given a plain number is an error (with a hint
//! to quote it) and a type error inside reports the path of the enclosing mapping.
//!
//! Paths: keys joined with `.`, sequence indices in brackets, the root is `""`. Lines
//! and columns are 1-based (columns count characters).

use std::collections::HashMap;
use std::fmt::{self, Write as _};

use serde::de::{self, DeserializeSeed, IntoDeserializer, Unexpected, Visitor};
use serde_path_to_error::Segment;
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Minimum similarity (normalized Damerau-Levenshtein on lower-cased names with `_`
/// and `-` removed, 0.0..=1.0) for [`did_you_mean`] to suggest a candidate.
pub const DID_YOU_MEAN_THRESHOLD: f64 = 0.65;

/// Deepest nesting of mappings/sequences accepted (guards the recursive deserializer).
const MAX_DEPTH: usize = 128;
/// Most nodes a document may expand to, counting alias copies ("billion laughs" guard).
const MAX_NODES: usize = 1_000_000;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// One located configuration error.
///
/// Display: `file:line:col: path: message (hint)`; the location, path and hint parts
/// are left out when absent, e.g.
/// ``config.yaml:7:5: routes[1].prefx: unknown field `prefx` (did you mean `prefix`?)``
/// or `config.yaml: cannot read file: ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File name as given to [`parse_str`]; empty from [`substitute_env`].
    pub file: String,
    /// 1-based line.
    pub line: Option<usize>,
    /// 1-based column (in characters).
    pub column: Option<usize>,
    /// Key path such as `routes[3].grpc.method`; empty for the root or no path.
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut location = self.file.clone();
        if let Some(line) = self.line {
            if !location.is_empty() {
                location.push(':');
            }
            let _ = write!(location, "{line}");
            if let Some(column) = self.column {
                let _ = write!(location, ":{column}");
            }
        }
        if !location.is_empty() {
            write!(f, "{location}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// All errors of one load; Display prints one error per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }
}

fn sorted(mut errors: Vec<ConfigError>) -> ConfigErrors {
    errors.sort_by_key(|e| (e.line.unwrap_or(0), e.column.unwrap_or(0)));
    ConfigErrors(errors)
}

// ---------------------------------------------------------------------------
// Source map
// ---------------------------------------------------------------------------

/// Where each path of the loaded document was written.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    file: String,
    /// Position of the key of each mapping entry.
    keys: HashMap<String, (usize, usize)>,
    /// Position of each node (value, sequence item, the root).
    values: HashMap<String, (usize, usize)>,
}

impl SourceMap {
    /// A map with no positions, for configs built in code (quick mode): errors name the key
    /// path and `origin` instead of a line.
    pub fn empty(origin: &str) -> SourceMap {
        SourceMap {
            file: origin.to_string(),
            keys: HashMap::new(),
            values: HashMap::new(),
        }
    }

    /// The file name given to [`parse_str`].
    pub fn file(&self) -> &str {
        &self.file
    }

    /// 1-based `(line, column)` of `path`: the key for a mapping entry, the node itself
    /// for a sequence item or the root; if `path` is unknown, that of its nearest ancestor.
    pub fn position(&self, path: &str) -> Option<(usize, usize)> {
        let mut current = path;
        loop {
            if let Some(pos) = self.keys.get(current).or_else(|| self.values.get(current)) {
                return Some(*pos);
            }
            if current.is_empty() {
                return None;
            }
            current = parent_path(current);
        }
    }

    /// Like [`SourceMap::position`] but prefers where the value itself starts
    /// (`port: abc` points at `abc`, not at `port`).
    pub fn value_position(&self, path: &str) -> Option<(usize, usize)> {
        self.values
            .get(path)
            .copied()
            .or_else(|| self.position(path))
    }

    /// A located error for later semantic validation.
    pub fn error(&self, path: &str, message: impl Into<String>) -> ConfigError {
        let pos = self.position(path);
        ConfigError {
            file: self.file.clone(),
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            path: path.to_string(),
            message: message.into(),
            hint: None,
        }
    }

    /// [`SourceMap::error`] with a hint such as ``did you mean `GetBook`?``.
    pub fn error_with_hint(
        &self,
        path: &str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> ConfigError {
        let mut error = self.error(path, message);
        error.hint = Some(hint.into());
        error
    }

    fn record(&mut self, path: &str, node: &Node) {
        self.values
            .insert(path.to_string(), (node.pos.line, node.pos.col));
        match &node.kind {
            NodeKind::Scalar(_) => {}
            NodeKind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.record(&format!("{path}[{i}]"), item);
                }
            }
            NodeKind::Map(entries) => {
                for entry in entries {
                    let child = join_key(path, &entry.key.text);
                    self.keys
                        .insert(child.clone(), (entry.key_pos.line, entry.key_pos.col));
                    self.record(&child, &entry.value);
                }
            }
        }
    }
}

fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// `a.b[2]` -> `a.b`, `a.b` -> `a`, `a` -> `""`. Always strictly shorter.
fn parent_path(path: &str) -> &str {
    if path.ends_with(']') {
        if let Some(i) = path.rfind('[') {
            return &path[..i];
        }
    }
    match path.rfind('.') {
        Some(i) => &path[..i],
        None => "",
    }
}

// ---------------------------------------------------------------------------
// Environment substitution
// ---------------------------------------------------------------------------

/// Replaces `${VAR}`, `${VAR:-default}` and `$$` in `text`; returns the first error.
/// Errors carry line and column but an empty file name ([`parse_str`] fills it in).
// The signature is fixed by the gateway's API; errors are rare and cold.
#[allow(clippy::result_large_err)]
pub fn substitute_env(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let (text, errors) = substitute_env_all(text, &lookup);
    match errors.into_iter().next() {
        None => Ok(text),
        Some(first) => Err(first),
    }
}

/// Like [`substitute_env`] but collects every error; a reference that fails is replaced by
/// nothing, so the rest of the file can still be checked.
fn substitute_env_all(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> (String, Vec<ConfigError>) {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let line_no = index + 1;
        let mut rest = line;
        while let Some(dollar) = rest.find('$') {
            let offset = line.len() - rest.len() + dollar;
            let column = line[..offset].chars().count() + 1;
            let error = |message: String, hint: Option<&str>| ConfigError {
                file: String::new(),
                line: Some(line_no),
                column: Some(column),
                path: String::new(),
                message,
                hint: hint.map(str::to_string),
            };
            out.push_str(&rest[..dollar]);
            let after = &rest[dollar + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(body) = after.strip_prefix('{') {
                let Some(end) = body.find('}') else {
                    errors.push(error(
                        "unterminated `${` (no `}` on the same line)".to_string(),
                        Some("write `$$` for a literal `$`"),
                    ));
                    out.push_str("${");
                    rest = body;
                    continue;
                };
                let inner = &body[..end];
                rest = &body[end + 1..];
                let (name, default) = match inner.split_once(":-") {
                    Some((name, default)) => (name, Some(default)),
                    None => (inner, None),
                };
                if !is_env_name(name) {
                    errors.push(error(
                        format!("invalid environment reference `${{{inner}}}`"),
                        Some(
                            "use `${NAME}` or `${NAME:-default}`; NAME is letters, digits and `_`",
                        ),
                    ));
                    continue;
                }
                let value = match (lookup(name), default) {
                    (Some(value), Some(default)) if value.is_empty() => default.to_string(),
                    (Some(value), _) => value,
                    (None, Some(default)) => default.to_string(),
                    (None, None) => {
                        errors.push(error(
                            format!("environment variable `{name}` is not set"),
                            Some("set it, or give a default with `${NAME:-default}`"),
                        ));
                        continue;
                    }
                };
                if value.contains(['\n', '\r']) {
                    errors.push(error(
                        format!("environment variable `{name}` contains a line break"),
                        None,
                    ));
                    continue;
                }
                out.push_str(&value);
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
    }
    (out, errors)
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

// ---------------------------------------------------------------------------
// YAML -> tree
// ---------------------------------------------------------------------------

/// 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Pos {
    line: usize,
    col: usize,
}

impl Pos {
    /// yaml-rust2 markers have 1-based lines but 0-based columns.
    fn of(mark: &Marker) -> Pos {
        Pos {
            line: mark.line(),
            col: mark.col() + 1,
        }
    }
}

#[derive(Debug, Clone)]
struct Node {
    pos: Pos,
    /// 0 for scalars, 1 + the tallest child for collections.
    height: usize,
    kind: NodeKind,
}

#[derive(Debug, Clone)]
enum NodeKind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone)]
struct Entry {
    key: Scalar,
    key_pos: Pos,
    value: Node,
}

#[derive(Debug, Clone)]
struct Scalar {
    /// The text as written (after YAML unescaping).
    text: String,
    kind: ScalarKind,
}

#[derive(Debug, Clone, Copy)]
enum ScalarKind {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str,
}

impl Node {
    fn empty_map(pos: Pos) -> Node {
        Node {
            pos,
            height: 1,
            kind: NodeKind::Map(Vec::new()),
        }
    }

    fn count(&self) -> usize {
        1 + match &self.kind {
            NodeKind::Scalar(_) => 0,
            NodeKind::Seq(items) => items.iter().map(Node::count).sum(),
            NodeKind::Map(entries) => entries.iter().map(|e| e.value.count()).sum(),
        }
    }
}

enum PendingKey {
    None,
    Key(Scalar, Pos),
    /// A complex key was reported; its value is dropped.
    Invalid,
}

enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        height: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        height: usize,
        entries: Vec<Entry>,
        pending: PendingKey,
        /// key text -> line of its first occurrence
        lines: HashMap<String, usize>,
    },
}

struct Builder<'f> {
    file: &'f str,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, usize)>,
    nodes: usize,
    root: Option<Node>,
    errors: Vec<ConfigError>,
    fatal: bool,
}

impl<'f> Builder<'f> {
    fn error(&mut self, pos: Pos, path: String, message: String, hint: Option<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line: Some(pos.line),
            column: Some(pos.col),
            path,
            message,
            hint,
        });
    }

    /// Path of the node about to be attached to the innermost open collection.
    fn child_path(&self) -> String {
        let mut path = String::new();
        for frame in &self.stack {
            match frame {
                Frame::Seq { items, .. } => {
                    let _ = write!(path, "[{}]", items.len());
                }
                Frame::Map {
                    pending: PendingKey::Key(key, _),
                    ..
                } => path = join_key(&path, &key.text),
                Frame::Map { .. } => {}
            }
        }
        path
    }

    /// True when the next node completes a mapping key.
    fn expecting_key(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Frame::Map {
                pending: PendingKey::None,
                ..
            })
        )
    }

    fn pending_key_pos(&self) -> Option<Pos> {
        match self.stack.last() {
            Some(Frame::Map {
                pending: PendingKey::Key(_, pos),
                ..
            }) => Some(*pos),
            _ => None,
        }
    }

    fn check_collection_tag(&mut self, tag: Option<Tag>, allowed: &str, pos: Pos) {
        if let Some(tag) = tag {
            let name = tag_name(&tag);
            if name != allowed {
                let path = self.child_path();
                self.error(pos, path, format!("unsupported YAML tag `{name}`"), None);
            }
        }
    }

    fn scalar(
        &mut self,
        text: String,
        style: TScalarStyle,
        anchor: usize,
        tag: Option<Tag>,
        mut pos: Pos,
    ) {
        let plain = style == TScalarStyle::Plain;
        if plain && text.is_empty() {
            // yaml-rust2 marks an empty value at the *next* token; use its key instead.
            if let Some(key_pos) = self.pending_key_pos() {
                pos = key_pos;
            }
        }
        let is_key = self.expecting_key();
        let kind = match tag {
            Some(tag) => {
                let name = tag_name(&tag);
                if name != "!!str" && name != "!" {
                    let path = self.child_path();
                    self.error(pos, path, format!("unsupported YAML tag `{name}`"), None);
                }
                ScalarKind::Str
            }
            None if !plain => ScalarKind::Str,
            None => match resolve_plain(&text) {
                Ok(kind) => kind,
                Err(_) if is_key => ScalarKind::Str,
                Err((message, hint)) => {
                    let path = self.child_path();
                    self.error(pos, path, message, Some(hint));
                    ScalarKind::Str
                }
            },
        };
        let node = Node {
            pos,
            height: 0,
            kind: NodeKind::Scalar(Scalar { text, kind }),
        };
        self.finish(node, anchor);
    }

    fn alias(&mut self, id: usize, pos: Pos) {
        let Some((anchored, count)) = self.anchors.get(&id) else {
            let path = self.child_path();
            self.error(
                pos,
                path,
                "recursive alias: it refers to an anchor that encloses it".to_string(),
                None,
            );
            let null = Node {
                pos,
                height: 0,
                kind: NodeKind::Scalar(Scalar {
                    text: String::new(),
                    kind: ScalarKind::Null,
                }),
            };
            self.attach(null);
            return;
        };
        self.nodes += count;
        if self.nodes > MAX_NODES || self.stack.len() + anchored.height > MAX_DEPTH {
            let path = self.child_path();
            self.error(
                pos,
                path,
                "aliases expand to a document that is too large or too deep".to_string(),
                None,
            );
            self.fatal = true;
            return;
        }
        let mut node = anchored.clone();
        node.pos = pos;
        self.attach(node);
    }

    fn start(&mut self, frame: Frame, pos: Pos) {
        if self.stack.len() >= MAX_DEPTH {
            let path = self.child_path();
            self.error(
                pos,
                path,
                format!("nesting deeper than {MAX_DEPTH} levels"),
                None,
            );
            self.fatal = true;
            return;
        }
        self.stack.push(frame);
    }

    fn end(&mut self) {
        let (node, anchor) = match self.stack.pop() {
            Some(Frame::Seq {
                pos,
                anchor,
                height,
                items,
            }) => (
                Node {
                    pos,
                    height,
                    kind: NodeKind::Seq(items),
                },
                anchor,
            ),
            Some(Frame::Map {
                pos,
                anchor,
                height,
                entries,
                ..
            }) => {
                // A block mapping's start marker sits after its first key; use the key.
                let pos = entries.first().map_or(pos, |e| e.key_pos.min(pos));
                let kind = NodeKind::Map(entries);
                (Node { pos, height, kind }, anchor)
            }
            None => return,
        };
        self.finish(node, anchor);
    }

    fn finish(&mut self, node: Node, anchor: usize) {
        self.nodes += 1;
        if anchor != 0 {
            let count = node.count();
            self.anchors.insert(anchor, (node.clone(), count));
        }
        self.attach(node);
    }

    fn attach(&mut self, node: Node) {
        // Path of a duplicate key, computed before the mutable borrow below.
        let parent = match self.stack.last() {
            Some(Frame::Map {
                pending: PendingKey::Key(..),
                ..
            }) => {
                let mut path = String::new();
                for frame in &self.stack[..self.stack.len() - 1] {
                    match frame {
                        Frame::Seq { items, .. } => {
                            let _ = write!(path, "[{}]", items.len());
                        }
                        Frame::Map {
                            pending: PendingKey::Key(key, _),
                            ..
                        } => path = join_key(&path, &key.text),
                        Frame::Map { .. } => {}
                    }
                }
                path
            }
            _ => String::new(),
        };
        let mut problem = None;
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { height, items, .. }) => {
                *height = (*height).max(node.height + 1);
                items.push(node);
            }
            Some(Frame::Map {
                height,
                entries,
                pending,
                lines,
                ..
            }) => match std::mem::replace(pending, PendingKey::None) {
                PendingKey::None => match node.kind {
                    NodeKind::Scalar(key) => *pending = PendingKey::Key(key, node.pos),
                    _ => {
                        *pending = PendingKey::Invalid;
                        problem = Some((
                            node.pos,
                            String::new(),
                            "complex mapping keys (mappings or sequences as keys) are not supported"
                                .to_string(),
                        ));
                    }
                },
                PendingKey::Key(key, key_pos) => {
                    if let Some(first) = lines.get(&key.text) {
                        problem = Some((
                            key_pos,
                            join_key(&parent, &key.text),
                            format!(
                                "duplicate key `{}` (first defined at line {first})",
                                key.text
                            ),
                        ));
                    } else {
                        lines.insert(key.text.clone(), key_pos.line);
                        *height = (*height).max(node.height + 1);
                        entries.push(Entry {
                            key,
                            key_pos,
                            value: node,
                        });
                    }
                }
                PendingKey::Invalid => {}
            },
        }
        if let Some((pos, mut path, message)) = problem {
            if path.is_empty() {
                path = self.child_path();
            }
            self.error(pos, path, message, None);
        }
    }
}

fn tag_name(tag: &Tag) -> String {
    if tag.handle == "tag:yaml.org,2002:" {
        format!("!!{}", tag.suffix)
    } else if tag.handle.is_empty() {
        format!("!<{}>", tag.suffix)
    } else {
        format!("{}{}", tag.handle, tag.suffix)
    }
}

/// YAML 1.2 core schema resolution of a plain scalar. Errors: (message, hint).
fn resolve_plain(text: &str) -> Result<ScalarKind, (String, String)> {
    let quote_hint = || format!("quote it (\"{text}\") to use it as a string");
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(ScalarKind::Null),
        "true" | "True" | "TRUE" => return Ok(ScalarKind::Bool(true)),
        "false" | "False" | "FALSE" => return Ok(ScalarKind::Bool(false)),
        _ => {}
    }
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") || matches!(text, ".nan" | ".NaN" | ".NAN") {
        return Err((
            format!("`{text}` is not supported: infinity and NaN have no JSON equivalent"),
            quote_hint(),
        ));
    }
    let radix = |digits: &str, radix: u32| {
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return None;
        }
        Some(u64::from_str_radix(digits, radix).map(ScalarKind::UInt))
    };
    let int = if let Some(hex) = text.strip_prefix("0x") {
        radix(hex, 16)
    } else if let Some(oct) = text.strip_prefix("0o") {
        radix(oct, 8)
    } else if is_decimal(text) {
        Some(match text.strip_prefix('-') {
            Some(_) => text.parse::<i64>().map(ScalarKind::Int),
            None => text
                .trim_start_matches('+')
                .parse::<u64>()
                .map(ScalarKind::UInt),
        })
    } else {
        None
    };
    match int {
        Some(Ok(kind)) => return Ok(kind),
        Some(Err(_)) => {
            return Err((
                format!("integer `{text}` does not fit in 64 bits"),
                quote_hint(),
            ))
        }
        None => {}
    }
    if is_float(text) {
        return match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(ScalarKind::Float(f)),
            _ => Err((format!("number `{text}` is out of range"), quote_hint())),
        };
    }
    Ok(ScalarKind::Str)
}

/// `[-+]?[0-9]+`
fn is_decimal(text: &str) -> bool {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
fn is_float(text: &str) -> bool {
    let s = text.strip_prefix(['+', '-']).unwrap_or(text);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            int.bytes().all(|b| b.is_ascii_digit())
                && frac.bytes().all(|b| b.is_ascii_digit())
                && (!int.is_empty() || !frac.is_empty())
        }
        None => !mantissa.is_empty() && mantissa.bytes().all(|b| b.is_ascii_digit()),
    };
    let exponent_ok = exponent.is_none_or(is_decimal);
    mantissa_ok && exponent_ok
}

/// Parses `text` (already substituted) into the tree; collects every error it can.
fn build_tree(file: &str, text: &str) -> Result<Node, ConfigErrors> {
    let mut parser = Parser::new_from_str(text);
    let mut builder = Builder {
        file,
        stack: Vec::new(),
        anchors: HashMap::new(),
        nodes: 0,
        root: None,
        errors: Vec::new(),
        fatal: false,
    };
    let mut documents = 0;
    while !builder.fatal {
        let (event, mark) = match parser.next_token() {
            Ok(next) => next,
            Err(e) => {
                let pos = Pos::of(e.marker());
                let message = format!("YAML syntax error: {}", e.info());
                builder.error(pos, String::new(), message, None);
                break;
            }
        };
        let pos = Pos::of(&mark);
        match event {
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    builder.error(
                        pos,
                        String::new(),
                        "multiple YAML documents (`---`) in one file are not supported".to_string(),
                        None,
                    );
                    break;
                }
            }
            Event::Alias(id) => builder.alias(id, pos),
            Event::Scalar(value, style, anchor, tag) => {
                builder.scalar(value, style, anchor, tag, pos)
            }
            Event::SequenceStart(anchor, tag) => {
                builder.check_collection_tag(tag, "!!seq", pos);
                let frame = Frame::Seq {
                    pos,
                    anchor,
                    height: 1,
                    items: Vec::new(),
                };
                builder.start(frame, pos);
            }
            Event::MappingStart(anchor, tag) => {
                builder.check_collection_tag(tag, "!!map", pos);
                let frame = Frame::Map {
                    pos,
                    anchor,
                    height: 1,
                    entries: Vec::new(),
                    pending: PendingKey::None,
                    lines: HashMap::new(),
                };
                builder.start(frame, pos);
            }
            Event::SequenceEnd | Event::MappingEnd => builder.end(),
        }
    }
    if !builder.errors.is_empty() {
        return Err(sorted(builder.errors));
    }
    let start = Pos { line: 1, col: 1 };
    Ok(match builder.root {
        None => Node::empty_map(start),
        Some(Node {
            pos,
            kind:
                NodeKind::Scalar(Scalar {
                    kind: ScalarKind::Null,
                    ref text,
                }),
            ..
        }) if text.is_empty() => Node::empty_map(pos),
        Some(root) => root,
    })
}

// ---------------------------------------------------------------------------
// Deserializer over the tree
// ---------------------------------------------------------------------------

/// Unknown field/variant details kept for did-you-mean hints.
#[derive(Debug)]
enum Unknown {
    Field(String, &'static [&'static str]),
    Variant(String, &'static [&'static str]),
    Missing,
}

#[derive(Debug)]
struct DeError {
    message: String,
    unknown: Option<Unknown>,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string(),
            unknown: None,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError {
            message: format!("unknown field `{field}`"),
            unknown: Some(Unknown::Field(field.to_string(), expected)),
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError {
            message: format!("unknown variant `{variant}`"),
            unknown: Some(Unknown::Variant(variant.to_string(), expected)),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        DeError {
            message: format!("missing field `{field}`"),
            unknown: Some(Unknown::Missing),
        }
    }
}

fn unexpected_scalar(s: &Scalar) -> Unexpected<'_> {
    match s.kind {
        ScalarKind::Null => Unexpected::Other("null"),
        ScalarKind::Bool(b) => Unexpected::Bool(b),
        ScalarKind::Int(i) => Unexpected::Signed(i),
        ScalarKind::UInt(u) => Unexpected::Unsigned(u),
        ScalarKind::Float(f) => Unexpected::Float(f),
        ScalarKind::Str => Unexpected::Str(&s.text),
    }
}

/// Deserializes one scalar; `key` scalars always read as their text.
struct ScalarDe<'de> {
    s: &'de Scalar,
    key: bool,
}

impl<'de> ScalarDe<'de> {
    fn typed<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.s.kind {
            ScalarKind::Null => visitor.visit_unit(),
            ScalarKind::Bool(b) => visitor.visit_bool(b),
            ScalarKind::Int(i) => visitor.visit_i64(i),
            ScalarKind::UInt(u) => visitor.visit_u64(u),
            ScalarKind::Float(f) => visitor.visit_f64(f),
            ScalarKind::Str => visitor.visit_borrowed_str(&self.s.text),
        }
    }

    fn non_null<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if matches!(self.s.kind, ScalarKind::Null) && !self.key {
            return Err(de::Error::invalid_type(Unexpected::Other("null"), &visitor));
        }
        self.typed(visitor)
    }

    fn text<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if matches!(self.s.kind, ScalarKind::Null) && !self.key {
            return Err(de::Error::invalid_type(Unexpected::Other("null"), &visitor));
        }
        visitor.visit_borrowed_str(&self.s.text)
    }
}

macro_rules! scalar_methods {
    ($via:ident: $($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.$via(visitor)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for ScalarDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.key {
            // Keys stay text so that e.g. a buffered `1:` never becomes a field index.
            return visitor.visit_borrowed_str(&self.s.text);
        }
        self.typed(visitor)
    }

    scalar_methods!(text: deserialize_str deserialize_string deserialize_identifier deserialize_char);
    scalar_methods!(non_null: deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32
        deserialize_u64 deserialize_u128 deserialize_f32 deserialize_f64 deserialize_bytes
        deserialize_byte_buf deserialize_seq deserialize_map);
    scalar_methods!(typed: deserialize_unit);

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.s.kind {
            ScalarKind::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.typed(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.non_null(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.non_null(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.non_null(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if matches!(self.s.kind, ScalarKind::Null) && !self.key {
            return Err(de::Error::invalid_type(Unexpected::Other("null"), &visitor));
        }
        let variant: de::value::StrDeserializer<'_, DeError> =
            self.s.text.as_str().into_deserializer();
        visitor.visit_enum(variant)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

/// Deserializes any node of the tree.
struct NodeDe<'de>(&'de Node);

impl<'de> NodeDe<'de> {
    fn scalar(&self) -> Option<ScalarDe<'de>> {
        match &self.0.kind {
            NodeKind::Scalar(s) => Some(ScalarDe { s, key: false }),
            _ => None,
        }
    }
}

macro_rules! node_methods {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            match self.scalar() {
                Some(s) => s.$method(visitor),
                None => self.deserialize_any(visitor),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for NodeDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.kind {
            NodeKind::Scalar(s) => ScalarDe { s, key: false }.typed(visitor),
            NodeKind::Seq(items) => {
                let mut access = SeqAccess { iter: items.iter() };
                let value = visitor.visit_seq(&mut access)?;
                if access.iter.len() == 0 {
                    Ok(value)
                } else {
                    Err(de::Error::invalid_length(items.len(), &"fewer elements"))
                }
            }
            NodeKind::Map(entries) => visitor.visit_map(MapAccess {
                iter: entries.iter(),
                value: None,
            }),
        }
    }

    node_methods!(deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32
        deserialize_u64 deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char
        deserialize_str deserialize_string deserialize_identifier deserialize_bytes
        deserialize_byte_buf deserialize_unit deserialize_seq deserialize_map);

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some(s) if matches!(s.s.kind, ScalarKind::Null) => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some(s) => s.deserialize_unit_struct(name, visitor),
            None => self.deserialize_any(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some(s) => s.deserialize_tuple(len, visitor),
            None => self.deserialize_any(visitor),
        }
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some(s) => s.deserialize_tuple_struct(name, len, visitor),
            None => self.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.0.kind {
            NodeKind::Scalar(s) => {
                ScalarDe { s, key: false }.deserialize_struct(name, fields, visitor)
            }
            // serde-derived structs would also accept a positional sequence; configs don't.
            NodeKind::Seq(_) => Err(de::Error::invalid_type(Unexpected::Seq, &visitor)),
            NodeKind::Map(_) => self.deserialize_any(visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.0.kind {
            NodeKind::Scalar(s) => {
                let scalar = ScalarDe { s, key: false };
                scalar.deserialize_enum(name, variants, visitor)
            }
            NodeKind::Map(entries) => match entries.as_slice() {
                [entry] => visitor.visit_enum(EnumAccess { entry }),
                _ => Err(de::Error::custom(format_args!(
                    "expected a variant name or a mapping with exactly one key \
                     (the variant) for enum {name}"
                ))),
            },
            NodeKind::Seq(_) => Err(de::Error::invalid_type(Unexpected::Seq, &visitor)),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct SeqAccess<'de> {
    iter: std::slice::Iter<'de, Node>,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        self.iter
            .next()
            .map(|node| seed.deserialize(NodeDe(node)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct MapAccess<'de> {
    iter: std::slice::Iter<'de, Entry>,
    value: Option<&'de Node>,
}

impl<'de> de::MapAccess<'de> for MapAccess<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.iter.next() {
            Some(entry) => {
                self.value = Some(&entry.value);
                seed.deserialize(ScalarDe {
                    s: &entry.key,
                    key: true,
                })
                .map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some(node) => seed.deserialize(NodeDe(node)),
            None => Err(de::Error::custom("map value requested before its key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

/// Externally tagged enum written as `{variant: content}`.
struct EnumAccess<'de> {
    entry: &'de Entry,
}

impl<'de> de::EnumAccess<'de> for EnumAccess<'de> {
    type Error = DeError;
    type Variant = NodeDe<'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, NodeDe<'de>), DeError> {
        let key = ScalarDe {
            s: &self.entry.key,
            key: true,
        };
        Ok((seed.deserialize(key)?, NodeDe(&self.entry.value)))
    }
}

impl<'de> de::VariantAccess<'de> for NodeDe<'de> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match &self.0.kind {
            NodeKind::Scalar(s) if matches!(s.kind, ScalarKind::Null) => Ok(()),
            NodeKind::Scalar(s) => Err(de::Error::invalid_type(
                unexpected_scalar(s),
                &"nothing after a unit variant",
            )),
            NodeKind::Seq(_) => Err(de::Error::invalid_type(
                Unexpected::Seq,
                &"nothing after a unit variant",
            )),
            NodeKind::Map(_) => Err(de::Error::invalid_type(
                Unexpected::Map,
                &"nothing after a unit variant",
            )),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_tuple(self, len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_struct(self, "", fields, visitor)
    }
}

// ---------------------------------------------------------------------------
// Error mapping and did-you-mean
// ---------------------------------------------------------------------------

/// The closest candidate to `input`, if any is similar enough
/// (see [`DID_YOU_MEAN_THRESHOLD`]); case, `_` and `-` are ignored. Ties go to the
/// first candidate.
pub fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    fn normalize(s: &str) -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    }
    let input = normalize(input);
    let mut best: Option<(f64, &'a str)> = None;
    for candidate in candidates {
        let score = strsim::normalized_damerau_levenshtein(&input, &normalize(candidate));
        if score >= DID_YOU_MEAN_THRESHOLD && best.is_none_or(|(b, _)| score > b) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

fn candidates_hint(input: &str, expected: &[&str]) -> Option<String> {
    if let Some(best) = did_you_mean(input, expected.iter().copied()) {
        return Some(format!("did you mean `{best}`?"));
    }
    if expected.is_empty() {
        return None;
    }
    let list: Vec<String> = expected.iter().map(|e| format!("`{e}`")).collect();
    Some(format!("expected one of {}", list.join(", ")))
}

fn segment_path(segments: &[&Segment]) -> String {
    let mut path = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => {
                let _ = write!(path, "[{index}]");
            }
            Segment::Map { key } | Segment::Enum { variant: key } => path = join_key(&path, key),
            Segment::Unknown => break,
        }
    }
    path
}

fn find_node<'a>(root: &'a Node, segments: &[&Segment]) -> &'a Node {
    let mut node = root;
    for segment in segments {
        let next = match (segment, &node.kind) {
            (Segment::Seq { index }, NodeKind::Seq(items)) => items.get(*index),
            (Segment::Map { key } | Segment::Enum { variant: key }, NodeKind::Map(entries)) => {
                entries
                    .iter()
                    .find(|e| e.key.text == *key)
                    .map(|e| &e.value)
            }
            _ => None,
        };
        match next {
            Some(next) => node = next,
            None => break,
        }
    }
    node
}

fn convert_error(
    error: serde_path_to_error::Error<DeError>,
    root: &Node,
    map: &SourceMap,
) -> ConfigError {
    let full_path = error.path().clone();
    let segments: Vec<&Segment> = full_path.iter().collect();
    let path = segment_path(&segments);
    let inner = error.into_inner();
    match inner.unknown {
        Some(Unknown::Field(field, expected)) => {
            // serde_path_to_error usually records the unknown key itself; it cannot
            // inside buffered (internally tagged) enums.
            let recorded = matches!(segments.last(), Some(Segment::Map { key }) if *key == field);
            let path = if recorded {
                path
            } else {
                join_key(&path, &field)
            };
            let mut e = map.error(&path, inner.message);
            e.hint = candidates_hint(&field, expected);
            if field == "<<" {
                e.hint = Some("YAML merge keys are not supported; repeat the keys".to_string());
            }
            e
        }
        Some(Unknown::Variant(variant, expected)) => {
            // Internally tagged (`type: grpcc`) or `{grpcc: ...}`: point at that key.
            let mut path = path;
            let mut at_value = true;
            if let NodeKind::Map(entries) = &find_node(root, &segments).kind {
                if entries.iter().any(|e| e.key.text == variant) {
                    path = join_key(&path, &variant);
                    at_value = false;
                } else if let Some(entry) = entries
                    .iter()
                    .find(|e| matches!(&e.value.kind, NodeKind::Scalar(s) if s.text == variant))
                {
                    path = join_key(&path, &entry.key.text);
                }
            }
            let mut e = map.error(&path, inner.message);
            if let Some(pos) = map.value_position(&path).filter(|_| at_value) {
                (e.line, e.column) = (Some(pos.0), Some(pos.1));
            }
            e.hint = candidates_hint(&variant, expected);
            e
        }
        Some(Unknown::Missing) => map.error(&path, inner.message),
        None => {
            let hint = (inner.message.starts_with("invalid type: integer")
                || inner.message.starts_with("invalid type: floating point")
                || inner.message.starts_with("invalid type: boolean"))
                && inner.message.ends_with("expected a string");
            let mut e = map.error(&path, inner.message);
            if let Some(pos) = map.value_position(&path) {
                (e.line, e.column) = (Some(pos.0), Some(pos.1));
            }
            if hint {
                e.hint = Some("quote the value to make it a string".to_string());
            }
            e
        }
    }
}

// ---------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------

/// Substitutes environment variables in `text`, parses it as YAML and deserializes it
/// into `T`. `file` is only used in messages and [`SourceMap::file`].
pub fn parse_str<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(T, SourceMap), ConfigErrors> {
    match parse_str_partial(file, text, lookup) {
        (Some(value), map, errors) if errors.is_empty() => Ok((value, map)),
        (_, _, errors) => Err(sorted(errors)),
    }
}

/// Like [`parse_str`], but goes on past errors so that one run reports as many as it can:
/// a failed `${VAR}` is replaced by nothing, and a key that cannot be deserialized (unknown,
/// wrong type, bad value) is reported and then dropped, and deserialization starts again.
///
/// Returns the errors (sorted by position) and, when every error could be stepped over and no
/// variable is missing, the value deserialized without the offending keys: good enough to look for *more* errors in
/// later checks, never to run with. Errors that follow from an earlier one (anything else on
/// the line of a failed `${VAR}`; a "missing field" in a mapping a key was dropped from) are not
/// reported.
pub fn parse_str_partial<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> (Option<T>, SourceMap, Vec<ConfigError>) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (text, env_errors) = substitute_env_all(text, &lookup);
    let env_lines: Vec<Option<usize>> = env_errors.iter().map(|e| e.line).collect();
    let mut errors: Vec<ConfigError> = env_errors
        .into_iter()
        .map(|e| ConfigError {
            file: file.to_string(),
            ..e
        })
        .collect();
    // Drop what only follows from an unset variable: the other errors on its line.
    let push = |errors: &mut Vec<ConfigError>, error: ConfigError| {
        if error.line.is_none() || !env_lines.contains(&error.line) {
            errors.push(error);
        }
    };
    let mut map = SourceMap {
        file: file.to_string(),
        ..SourceMap::default()
    };
    let mut root = match build_tree(file, &text) {
        Ok(root) => root,
        Err(tree_errors) => {
            for error in tree_errors.0 {
                push(&mut errors, error);
            }
            return (None, map, sorted(errors).0);
        }
    };
    map.record("", &root);
    let mut dropped: Vec<String> = Vec::new();
    let value = loop {
        let error = match serde_path_to_error::deserialize(NodeDe(&root)) {
            Ok(value) => break Some(value),
            Err(error) => error,
        };
        let segments: Vec<Segment> = error.path().iter().cloned().collect();
        let path = segment_path(&segments.iter().collect::<Vec<_>>());
        let mut steps = steps_of(&segments);
        match &error.inner().unknown {
            // Most likely the key dropped from this mapping was this one, misspelt.
            Some(Unknown::Missing) if dropped.iter().any(|d| parent_path(d) == path) => {
                break None;
            }
            Some(Unknown::Field(field, _)) => {
                let recorded =
                    matches!(segments.last(), Some(Segment::Map { key }) if key == field);
                if !recorded {
                    if let Some(steps) = steps.as_mut() {
                        steps.push(Step::Key(field.clone()));
                    }
                }
            }
            _ => {}
        }
        push(&mut errors, convert_error(error, &root, &map));
        match steps.and_then(|steps| drop_deepest_key(&mut root, &steps)) {
            Some(path) => dropped.push(path),
            None => break None,
        }
    };
    // A value with a variable missing is no basis for more checks: an empty `url:` would be
    // reported as "no address" on another line.
    let value = value.filter(|_| env_lines.is_empty());
    (value, map, sorted(errors).0)
}

/// One step of a path into the tree.
enum Step {
    Key(String),
    Index(usize),
}

/// The steps of a serde path; `None` when part of it is unknown.
fn steps_of(segments: &[Segment]) -> Option<Vec<Step>> {
    segments
        .iter()
        .map(|segment| match segment {
            Segment::Seq { index } => Some(Step::Index(*index)),
            Segment::Map { key } | Segment::Enum { variant: key } => Some(Step::Key(key.clone())),
            Segment::Unknown => None,
        })
        .collect()
}

/// Remove the mapping entry named by the last key of `steps` (an error in a sequence item
/// drops the whole sequence, so later items keep their indices); returns its path.
fn drop_deepest_key(root: &mut Node, steps: &[Step]) -> Option<String> {
    let last = steps.iter().rposition(|s| matches!(s, Step::Key(_)))?;
    let mut node = root;
    let mut path = String::new();
    for step in &steps[..last] {
        node = match (step, &mut node.kind) {
            (Step::Index(i), NodeKind::Seq(items)) => {
                let _ = write!(path, "[{i}]");
                items.get_mut(*i)?
            }
            (Step::Key(key), NodeKind::Map(entries)) => {
                path = join_key(&path, key);
                &mut entries.iter_mut().find(|e| e.key.text == *key)?.value
            }
            _ => return None,
        };
    }
    let Step::Key(key) = &steps[last] else {
        return None;
    };
    let NodeKind::Map(entries) = &mut node.kind else {
        return None;
    };
    let index = entries.iter().position(|e| e.key.text == *key)?;
    entries.remove(index);
    Some(join_key(&path, key))
}

/// Reads `path` and loads it with [`parse_str`], taking variables from the process
/// environment (a variable that is not valid Unicode counts as unset).
pub fn load_file<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
) -> Result<(T, SourceMap), ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        line: None,
        column: None,
        path: String::new(),
        message: format!("cannot read file: {e}"),
        hint: None,
    })?;
    parse_str(&file, &text, |name| std::env::var(name).ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Config {
        server: Server,
        #[serde(default)]
        routes: Vec<Route>,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        #[serde(default)]
        log: Option<Log>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Server {
        #[serde(default = "default_host")]
        host: String,
        port: u16,
        #[serde(default)]
        max_body_bytes: u64,
        #[serde(default)]
        ratio: f64,
        #[serde(default)]
        tls: Option<Tls>,
    }

    fn default_host() -> String {
        "0.0.0.0".to_string()
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Tls {
        cert: String,
        key: String,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Route {
        prefix: String,
        #[serde(default)]
        methods: Vec<Method>,
        #[serde(default)]
        strip_prefix: bool,
        #[serde(default)]
        retries: Option<u64>,
        backend: Backend,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Method {
        Get,
        Post,
        Delete,
    }

    /// Internally tagged.
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
    enum Backend {
        Grpc {
            service: String,
            method: String,
            #[serde(default)]
            timeout_ms: Option<u64>,
        },
        Http {
            url: String,
        },
    }

    /// Externally tagged.
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case", deny_unknown_fields)]
    enum Log {
        Stdout,
        File { path: String, rotate: bool },
    }

    fn env(name: &str) -> Option<String> {
        let vars = [
            ("PORT", "9090"),
            ("EMPTY", ""),
            ("SVC", "books.v1.Books"),
            ("MULTI", "a\nb"),
        ];
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }

    const SERVER: &str = "server: {port: 80}\n";
    const GRPC: &str = "{type: grpc, service: S, method: M}";

    /// `expect` is either `ok <fragment>` (loads, and the fragment occurs in the Debug
    /// output of the config, with spaces around `{}` removed) or the exact Display of
    /// all errors (lines joined with ` | `).
    fn check(yaml: &str, expect: &str) {
        match (
            parse_str::<Config>("config.yaml", yaml, env),
            expect.strip_prefix("ok "),
        ) {
            (Ok((config, _)), Some(fragment)) => {
                let debug = format!("{config:?}").replace(" { ", "{").replace(" }", "}");
                assert!(
                    debug.contains(fragment),
                    "{yaml:?}\n{debug}\nmissing {fragment}"
                );
            }
            (Ok((config, _)), None) => panic!("{yaml:?}: expected {expect}, got {config:?}"),
            (Err(errors), _) => {
                let got = errors.to_string().replace('\n', " | ");
                assert_eq!(got, expect, "{yaml:?}");
            }
        }
    }

    #[test]
    fn loads_and_reports() {
        let r =
            |body: &str| format!("{SERVER}routes:\n  - prefix: /a\n    backend: {GRPC}\n{body}");
        let cases: Vec<(String, &str)> = vec![
            // successes: defaults, Options, enums, maps, plain scalars in String fields
            (SERVER.into(), "ok Server{host: \"0.0.0.0\", port: 80, max_body_bytes: 0, ratio: 0.0, tls: None}, routes: [], headers: {}, log: None}"),
            ("server:\n  host: 8080\n  port: 0x1F\n  max_body_bytes: 0o17\n  ratio: 1\n".into(), "ok host: \"8080\", port: 31, max_body_bytes: 15, ratio: 1.0"),
            ("server: {host: 1.50, port: 1, ratio: -2.5e1}\n".into(), "ok host: \"1.50\", port: 1, max_body_bytes: 0, ratio: -25.0"),
            ("server: {host: yes, port: 1}\nheaders: {x-port: 8080, x-on: true, x-nil: ''}\n".into(), "ok headers: {\"x-nil\": \"\", \"x-on\": \"true\", \"x-port\": \"8080\"}"),
            ("server: {port: 1, host: !!str 5, tls: {cert: c, key: k}}\n".into(), "ok host: \"5\", port: 1, max_body_bytes: 0, ratio: 0.0, tls: Some(Tls{cert: \"c\", key: \"k\"})"),
            (r("  - {prefix: 8080, methods: [get, post], strip_prefix: TRUE, retries: 3, backend: {type: http, url: u}}\n"), "ok Route{prefix: \"8080\", methods: [Get, Post], strip_prefix: true, retries: Some(3), backend: Http{url: \"u\"}}"),
            (r(""), "ok backend: Grpc{service: \"S\", method: \"M\", timeout_ms: None}"),
            (r("  - prefix: /b\n    backend: {type: grpc, service: T, method: N, timeout_ms: 250}\n"), "ok timeout_ms: Some(250)"),
            (format!("{SERVER}log: stdout\n"), "ok log: Some(Stdout)"),
            (format!("{SERVER}log:\n  file: {{path: /var/log/gw, rotate: false}}\n"), "ok log: Some(File{path: \"/var/log/gw\", rotate: false})"),
            (format!("{SERVER}log: ~\n"), "ok log: None"),
            ("server: {port: 1}\n...\n".into(), "ok port: 1"),
            ("\u{feff}server:\r\n  port: 2\r\n".into(), "ok port: 2"),
            // aliases copy the anchored value
            (format!("{SERVER}routes:\n  - prefix: /a\n    backend: &b {GRPC}\n  - prefix: /b\n    backend: *b\n"), "ok prefix: \"/b\", methods: [], strip_prefix: false, retries: None, backend: Grpc{service: \"S\""),
            // environment
            ("server: {port: ${PORT}}\n".into(), "ok port: 9090"),
            ("server: {port: ${NOPE:-81}, host: \"${EMPTY:-h}\"}\n".into(), "ok host: \"h\", port: 81"),
            ("server: {port: 1, host: a$$b$c}\n".into(), "ok host: \"a$b$c\""),
            ("server: {port: 1, host: ${EMPTY}x}\n".into(), "ok host: \"x\""),
            // env errors: all of them, with lines
            ("server:\n  port: ${NOPE}\n  host: ${SVC}${ALSO}\n".into(), "config.yaml:2:9: environment variable `NOPE` is not set (set it, or give a default with `${NAME:-default}`) | config.yaml:3:15: environment variable `ALSO` is not set (set it, or give a default with `${NAME:-default}`)"),
            ("server: {port: 1}\n# ${OPEN\n".into(), "config.yaml:2:3: unterminated `${` (no `}` on the same line) (write `$$` for a literal `$`)"),
            ("server: {port: 1, host: ${MULTI}}\n".into(), "config.yaml:1:25: environment variable `MULTI` contains a line break"),
            ("server: {port: ${PORT-80}}\n".into(), "config.yaml:1:16: invalid environment reference `${PORT-80}` (use `${NAME}` or `${NAME:-default}`; NAME is letters, digits and `_`)"),
            // YAML-level errors
            ("server:\n  port: 1\n host: x\n".into(), "config.yaml:3:6: YAML syntax error: while parsing a block mapping, did not find expected key"),
            ("server: {port: \"1}\n".into(), "config.yaml:1:16: YAML syntax error: while scanning a quoted scalar, found unexpected end of stream"),
            ("server: {port: 1}\nroutes: *nope\n".into(), "config.yaml:2:9: YAML syntax error: while parsing node, found unknown anchor"),
            ("server:\n  port: 1\n  host: a\n  port: 2\n".into(), "config.yaml:4:3: server.port: duplicate key `port` (first defined at line 2)"),
            ("server: {port: 1}\n---\nserver: {port: 2}\n".into(), "config.yaml:2:1: multiple YAML documents (`---`) in one file are not supported"),
            ("server: {port: .inf, ratio: .NaN}\n".into(), "config.yaml:1:16: server.port: `.inf` is not supported: infinity and NaN have no JSON equivalent (quote it (\".inf\") to use it as a string) | config.yaml:1:29: server.ratio: `.NaN` is not supported: infinity and NaN have no JSON equivalent (quote it (\".NaN\") to use it as a string)"),
            ("server: {port: 18446744073709551616}\n".into(), "config.yaml:1:16: server.port: integer `18446744073709551616` does not fit in 64 bits (quote it (\"18446744073709551616\") to use it as a string)"),
            ("server: {port: 1}\n? [a, b]\n: c\n".into(), "config.yaml:2:3: complex mapping keys (mappings or sequences as keys) are not supported"),
            ("server: &s {port: 1, tls: *s}\n".into(), "config.yaml:1:27: server.tls: recursive alias: it refers to an anchor that encloses it"),
            ("server: !Env {port: 1}\n".into(), "config.yaml:1:14: server: unsupported YAML tag `!Env`"),
            // deserialization errors
            (r("  - prefx: /b\n    backend: {type: http, url: u}\n"), "config.yaml:5:5: routes[1].prefx: unknown field `prefx` (did you mean `prefix`?)"),
            ("server: {port: 1, zzz: 2}\n".into(), "config.yaml:1:19: server.zzz: unknown field `zzz` (expected one of `host`, `port`, `max_body_bytes`, `ratio`, `tls`)"),
            ("server: {port: 1}\nHeaders: {}\n".into(), "config.yaml:2:1: Headers: unknown field `Headers` (did you mean `headers`?)"),
            (r("  - prefix: /b\n    backend: {type: grpc, service: S, method: M, timeout: 5}\n"), "config.yaml:6:50: routes[1].backend.timeout: unknown field `timeout` (did you mean `timeout_ms`?)"),
            (r("  - prefix: /b\n    backend:\n      type: grpcc\n"), "config.yaml:7:13: routes[1].backend.type: unknown variant `grpcc` (did you mean `grpc`?)"),
            (r("  - prefix: /b\n    methods: [get, pots]\n    backend: {type: http, url: u}\n"), "config.yaml:6:20: routes[1].methods[1]: unknown variant `pots` (did you mean `post`?)"),
            (format!("{SERVER}log:\n  files: {{path: p, rotate: true}}\n"), "config.yaml:3:3: log.files: unknown variant `files` (did you mean `file`?)"),
            (format!("{SERVER}log:\n  file: {{path: p, rotat: true}}\n"), "config.yaml:3:19: log.file.rotat: unknown field `rotat` (did you mean `rotate`?)"),
            ("server:\n  port: abc\n".into(), "config.yaml:2:9: server.port: invalid type: string \"abc\", expected u16"),
            ("server:\n  port: \"8080\"\n".into(), "config.yaml:2:9: server.port: invalid type: string \"8080\", expected u16"),
            ("server:\n  port: 70000\n".into(), "config.yaml:2:9: server.port: invalid value: integer `70000`, expected u16"),
            ("server:\n  port:\n  host: h\n".into(), "config.yaml:2:3: server.port: invalid type: null, expected u16"),
            ("server: {port: 1, host: [a]}\n".into(), "config.yaml:1:25: server.host: invalid type: sequence, expected a string"),
            (r("  - prefix: /b\n    strip_prefix: yes\n    backend: {type: http, url: u}\n"), "config.yaml:6:19: routes[1].strip_prefix: invalid type: string \"yes\", expected a boolean"),
            (r("  - prefix: /b\n    backend: {type: http, url: 8080}\n"), "config.yaml:6:14: routes[1].backend: invalid type: integer `8080`, expected a string (quote the value to make it a string)"),
            ("server:\n  host: h\n".into(), "config.yaml:1:1: server: missing field `port`"),
            (r("  - backend: {type: http, url: u}\n"), "config.yaml:5:5: routes[1]: missing field `prefix`"),
            ("# nothing\n".into(), "config.yaml:1:1: missing field `server`"),
            ("server: 8080\n".into(), "config.yaml:1:9: server: invalid type: integer `8080`, expected struct Server"),
            ("- a\n".into(), "config.yaml:1:1: invalid type: sequence, expected struct Config"),
            (format!("{SERVER}log: {{file: {{path: p, rotate: true}}, stdout: ~}}\n"), "config.yaml:2:6: log: expected a variant name or a mapping with exactly one key (the variant) for enum Log"),
            (format!("{SERVER}<<: {{}}\n"), "config.yaml:2:1: <<: unknown field `<<` (YAML merge keys are not supported; repeat the keys)"),
        ];
        for (yaml, expect) in &cases {
            check(yaml, expect);
        }
    }

    /// `expect`: every error, ` | `-separated, then `=> partial` when a value was still
    /// produced for later checks, `=> none` otherwise.
    fn check_partial(yaml: &str, expect: &str) {
        let (value, _, errors) = parse_str_partial::<Config>("c.yaml", yaml, env);
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let got = format!(
            "{} => {}",
            errors.join(" | "),
            if value.is_some() { "partial" } else { "none" }
        );
        assert_eq!(got, expect, "{yaml:?}");
    }

    #[test]
    fn goes_on_past_errors_to_report_them_all() {
        let cases = [
            // every unknown key and bad value, not just the first; the rest still loads
            ("server:\n  prot: 1\n  port: 2\n  max_body_bytes: x\nheders: {}\n", "c.yaml:2:3: server.prot: unknown field `prot` (did you mean `port`?) | c.yaml:4:19: server.max_body_bytes: invalid type: string \"x\", expected u64 | c.yaml:5:1: heders: unknown field `heders` (did you mean `headers`?) => partial"),
            // a misspelt required key: its "missing field" is not reported again
            ("server:\n  prot: 1\n", "c.yaml:2:3: server.prot: unknown field `prot` (did you mean `port`?) => none"),
            // a genuinely missing field is reported
            ("server:\n  host: h\n", "c.yaml:1:1: server: missing field `port` => none"),
            // a bad item drops its whole list, so later items keep their indices
            ("server: {port: 1}\nroutes:\n  - prefix: /a\n    methods: [get, pots]\n    backend: {type: http, url: u}\n", "c.yaml:4:20: routes[0].methods[1]: unknown variant `pots` (did you mean `post`?) => partial"),
            // an unset variable: reported, nothing more on its line, no value to check further
            ("server:\n  port: ${NOPE}\n  hots: x\n", "c.yaml:2:9: environment variable `NOPE` is not set (set it, or give a default with `${NAME:-default}`) | c.yaml:3:3: server.hots: unknown field `hots` (did you mean `host`?) => none"),
            ("server: {port: 1}\n", " => partial"),
        ];
        for (yaml, expect) in cases {
            check_partial(yaml, expect);
        }
    }

    /// `expect` is the substituted text, or `error: <Display of the first error>`.
    fn check_env(input: &str, expect: &str) {
        let got = match substitute_env(input, env) {
            Ok(text) => text,
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expect, "{input:?}");
    }

    #[test]
    fn env_substitution() {
        let cases = [
            ("plain $ text $5 $x", "plain $ text $5 $x"),
            ("$$ and $${X} and $$$$", "$ and ${X} and $$"),
            ("a: ${PORT}\nb: ${SVC}:${PORT}", "a: 9090\nb: books.v1.Books:9090"),
            ("${EMPTY}|${EMPTY:-d}|${NOPE:-}|${NOPE:-x:-y}", "|d||x:-y"),
            ("ünï: ${PORT}$", "ünï: 9090$"),
            ("a\nü ${NOPE}", "error: 2:3: environment variable `NOPE` is not set (set it, or give a default with `${NAME:-default}`)"),
            ("${PORT", "error: 1:1: unterminated `${` (no `}` on the same line) (write `$$` for a literal `$`)"),
            ("x ${PORT\n}", "error: 1:3: unterminated `${` (no `}` on the same line) (write `$$` for a literal `$`)"),
            ("${}", "error: 1:1: invalid environment reference `${}` (use `${NAME}` or `${NAME:-default}`; NAME is letters, digits and `_`)"),
            ("${1X}", "error: 1:1: invalid environment reference `${1X}` (use `${NAME}` or `${NAME:-default}`; NAME is letters, digits and `_`)"),
            ("k: ${MULTI}", "error: 1:4: environment variable `MULTI` contains a line break"),
        ];
        for (input, expect) in cases {
            check_env(input, expect);
        }
    }

    fn check_dym(input: &str, candidates: &[&str], expect: Option<&str>) {
        assert_eq!(
            did_you_mean(input, candidates.iter().copied()),
            expect,
            "{input}"
        );
    }

    #[test]
    fn did_you_mean_threshold() {
        let fields = [
            "prefix",
            "port",
            "host",
            "routes",
            "timeout_ms",
            "tls",
            "url",
        ];
        let cases = [
            ("prefx", Some("prefix")),
            ("prot", Some("port")),
            ("hots", Some("host")),
            ("rout", Some("routes")),
            ("timeoutMs", Some("timeout_ms")),
            ("TIMEOUT-MS", Some("timeout_ms")),
            ("tsl", Some("tls")),
            ("uri", Some("url")),
            ("name", None),
            ("xyz", None),
            ("", None),
            ("prefix_len", Some("prefix")),
            ("limit", None),
        ];
        for (input, expect) in cases {
            check_dym(input, &fields, expect);
        }
        check_dym("id", &["ip"], None);
        check_dym("level", &["label"], None);
        check_dym("GetBok", &["GetBook", "GetBooks"], Some("GetBook"));
    }

    /// `expect`: `line:col` from [`SourceMap::position`] (then `/line:col` from
    /// [`SourceMap::value_position`] when that differs) or `none`.
    fn check_pos(path: &str, expect: &str) {
        let yaml = "server:\n  port: 80\n  tls:\n    cert: c\n    key: k\nroutes:\n  - prefix: /a\n    backend: &b\n      type: http\n      url: u\n  -\n    prefix: /b\n    methods: [get,\n      post]\n    backend: *b\nheaders:\n  x:\n";
        let (_, map) = parse_str::<serde_json::Value>("c.yaml", yaml, env).expect("valid");
        let fmt =
            |p: Option<(usize, usize)>| p.map_or("none".to_string(), |(l, c)| format!("{l}:{c}"));
        let (key, value) = (map.position(path), map.value_position(path));
        let got = if key == value {
            fmt(key)
        } else {
            format!("{}/{}", fmt(key), fmt(value))
        };
        assert_eq!(got, expect, "{path}");
        assert_eq!(map.file(), "c.yaml");
    }

    #[test]
    fn source_map_positions() {
        let cases = [
            ("", "1:1"),
            ("server", "1:1/2:3"),
            ("server.port", "2:3/2:9"),
            ("server.tls.key", "5:5/5:10"),
            ("server.tls.nope", "3:3"),
            ("routes", "6:1/7:3"),
            ("routes[0]", "7:5"),
            ("routes[0].backend.url", "10:7/10:12"),
            ("routes[1]", "12:5"),
            ("routes[1].methods[1]", "14:7"),
            ("routes[1].backend", "15:5/15:14"),
            ("routes[1].backend.type", "9:7/9:13"),
            ("routes[9].x", "6:1"),
            ("headers.x", "17:3"),
        ];
        for (path, expect) in cases {
            check_pos(path, expect);
        }
    }

    #[test]
    fn semantic_errors_and_display() {
        let (_, map) = parse_str::<Config>("gw.yaml", "server:\n  port: 1\n", env).expect("valid");
        let e = map.error_with_hint("server.port", "port 1 is privileged", "use 1024 or more");
        assert_eq!(
            e.to_string(),
            "gw.yaml:2:3: server.port: port 1 is privileged (use 1024 or more)"
        );
        assert_eq!(
            map.error("", "no routes").to_string(),
            "gw.yaml:1:1: no routes"
        );
        let bare = ConfigError {
            file: "f".into(),
            line: None,
            column: None,
            path: String::new(),
            message: "m".into(),
            hint: None,
        };
        assert_eq!(bare.to_string(), "f: m");
        let errors = ConfigErrors(vec![
            bare.clone(),
            ConfigError {
                line: Some(3),
                ..bare
            },
        ]);
        assert_eq!(errors.to_string(), "f: m\nf:3: m");
    }

    #[test]
    fn generic_values_and_files() {
        let yaml = "a: &x {n: 1, s: '2', f: 0.5, b: false, z: ~, l: [-3, 0o7]}\nb: *x\n1: k\n";
        let (value, _) = parse_str::<serde_json::Value>("v.yaml", yaml, env).expect("valid");
        let expected = serde_json::json!({"a": {"n": 1, "s": "2", "f": 0.5, "b": false, "z": null, "l": [-3, 7]}, "b": {"n": 1, "s": "2", "f": 0.5, "b": false, "z": null, "l": [-3, 7]}, "1": "k"});
        assert_eq!(value, expected);
        let (ports, _) =
            parse_str::<BTreeMap<u16, String>>("p.yaml", "80: http\n443: https\n", env)
                .expect("valid");
        assert_eq!(ports.get(&443).map(String::as_str), Some("https"));

        let path = std::env::temp_dir().join(format!("configload-{}.yaml", std::process::id()));
        std::fs::write(&path, "server: {port: 7}\n").expect("write temp file");
        let loaded = load_file::<Config>(&path);
        std::fs::remove_file(&path).expect("remove temp file");
        assert_eq!(loaded.expect("valid").0.server.port, 7);
        let missing = load_file::<Config>(std::path::Path::new("/nonexistent/gw.yaml"))
            .expect_err("missing file");
        assert!(
            missing
                .to_string()
                .starts_with("/nonexistent/gw.yaml: cannot read file: "),
            "{missing}"
        );
    }

    #[test]
    fn limits() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let got = parse_str::<serde_json::Value>("d.yaml", &deep, env)
            .expect_err("too deep")
            .to_string();
        assert!(
            got.starts_with("d.yaml:1:129: ") && got.ends_with("nesting deeper than 128 levels"),
            "{got}"
        );
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let prev = format!("*a{}", i - 1);
            bomb.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        let got = parse_str::<serde_json::Value>("b.yaml", &bomb, env)
            .expect_err("too big")
            .to_string();
        assert!(
            got.ends_with("aliases expand to a document that is too large or too deep"),
            "{got}"
        );
    }
}
