//! `google.api.HttpRule` path templates: parsed and compiled once at load time,
//! matched against every request on the hot path.
//!
//! **In.** At load time, template strings such as
//! `/v1/{name=shelves/*/books/*}:publish` ([`PathTemplate::parse`]), each inserted into a
//! [`MatcherBuilder`] together with an HTTP method (`"GET"`, …, or a custom one such as
//! `"SEARCH"`, compared exactly) and a caller value `T` (e.g. the gRPC method to call).
//! Per request: the method, the raw URI path (query string already removed, still
//! percent-encoded) and an [`UnescapeMode`].
//!
//! **Out.** [`Match::Found`] with the value, the winning [`PathTemplate`] and the decoded
//! variable bindings as `(index into template.variables(), value)`;
//! [`Match::MethodNotAllowed`] with the sorted methods that would have matched the path;
//! [`Match::NotFound`]; or [`MatchError::InvalidEncoding`] when a bound value does not
//! decode to UTF-8. Load-time problems are reported as [`TemplateError`] (syntax, with the
//! template and byte position) and [`DuplicateBinding`] (two templates for one method that
//! match exactly the same paths, detected through [`PathTemplate::canonical`]).
//!
//! # Grammar
//!
//! ```text
//! Template  = "/" Segments [ Verb ] ;
//! Segments  = Segment { "/" Segment } ;
//! Segment   = "*" | "**" | LITERAL | Variable ;
//! Variable  = "{" FieldPath [ "=" Segments ] "}" ;
//! FieldPath = IDENT { "." IDENT } ;          IDENT = [A-Za-z_][A-Za-z0-9_]*
//! Verb      = ":" LITERAL ;
//! ```
//!
//! * `{x}` is `{x=*}`. `**` matches zero or more segments, inside a variable or not. A
//!   template holds at most one `**`; the segments after it (literals, `*`, variables) are
//!   a fixed number: `/v1/{name=shelves/**}/stats`, `/{path=**}/a/b:v`. (The HttpRule text
//!   asks for `**` to be last; Envoy's path matcher and grpc-gateway accept a fixed tail
//!   after it, so protos written for them load here too.)
//! * A LITERAL is one or more RFC 3986 `pchar`s except `*`: letters, digits,
//!   `-._~!$&'()+,;=:@`, and `%HH` escapes (so `v1.2`, `~me`, `a@b`, `a%20b` are literals).
//!   Rejected: empty template, missing leading `/`, empty segments (`//`, trailing `/`,
//!   `{x=}`), nested variables, unbalanced braces, bad identifiers, the same field path
//!   bound twice, a second `**`, a wildcard or variable that is only part of a
//!   segment, and an empty or invalid verb.
//! * The verb is introduced by the last `:` that is outside braces and after the last `/`
//!   outside braces: `/v1/{name=shelves/*}:watch` has verb `watch`; `/v1/a:b/c` has no verb
//!   (the `:` belongs to the literal `a:b`); `/v1/{n=a:b}` has none either.
//!
//! # Matching
//!
//! * The request path is split on `/` **before** any percent-decoding, so `%2F` never
//!   splits a segment. `/` alone is zero segments.
//! * Literals (and verbs) compare after normalising both sides: `%HH` escapes of unreserved
//!   characters (`A-Z a-z 0-9 - . _ ~`) are decoded and other escapes compare with
//!   case-insensitive hex. So `%7E` == `~` and `%3a` == `%3A`, but `%3A` != `:`
//!   (per HttpRule, reserved characters in a literal must be written percent-encoded).
//! * Empty segments match nothing, not even `*` or `**`. Consequently a **trailing slash is
//!   significant**: `/v1/shelves/` does not match `/v1/shelves` nor `/v1/{x=**}`
//!   (while `/v1` matches `/v1/{x=**}` with `x = ""`).
//! * Verbs: if the last request segment contains `:`, the path is tried twice: with the part
//!   after the last `:` as the verb (the part before it is the last segment) and with the
//!   whole segment as an ordinary segment. A template with a verb never matches a path
//!   without it; `/v1/{name=**}` matches `/v1/a:b` with `name = "a:b"`.
//! * When several templates match, the most specific wins: (1) compare segment by segment
//!   from the left, literal beats `*` / single-segment variable, which beats `**`; a template
//!   that has ended beats one whose `**` would match zero segments (`/v1/*` beats
//!   `/v1/*/**` for `/v1/a`); at a `**`, the templates continuing after it are tried on the
//!   longest remainder of the path first, so a fixed tail beats ending at `**` (`/a/**/b`
//!   beats `/a/**` for `/a/x/b`) and a longer tail a shorter one; (2) a template with a verb
//!   beats one without; (3) more segments;
//!   (4) first inserted. For a single method (2)–(4) only separate the two verb
//!   interpretations, because two templates that tie on (1) with the same verb have the
//!   same canonical form and are rejected as duplicates.
//! * No match for the method but a match for others → `MethodNotAllowed { allowed }`.
//! * Paths that do not start with `/` are `NotFound`.
//!
//! Compilation builds one segment trie per method (literal children in a small vector or a
//! hash map, plus one `*` child and one `**` child per node). Lookup walks the raw path
//! depth-first in specificity order and stops at the first hit; it does not allocate except
//! for the returned bindings (and the `allowed` list on the slow path).
//!
//! # Percent-decoding of bound values ([`UnescapeMode`], Envoy's `url_unescape_spec`)
//!
//! As in Envoy's gRPC-JSON transcoder (the mode applies "only when extracting variable with
//! multiple segments"), a **single-segment** variable (`{x}`, `{x=*}`, `{x=lit}`) is always
//! fully decoded, whatever the mode. A variable is **multi-segment** when its sub-template
//! has more than one segment or contains `**`, even if it matched one segment or none.
//! Multi-segment values are the original segments joined by `/`, decoded per mode:
//!
//! | mode (Envoy name) | multi-segment value of `%2f%23/%20%2523` |
//! |---|---|
//! | `AllCharactersExceptReserved` (`ALL_CHARACTERS_EXCEPT_RESERVED`, default) — RFC 6570 reserved `:/?#[]@!$&'()*+,;=` stay encoded | `%2f%23/ %23` |
//! | `AllCharactersExceptSlash` (`ALL_CHARACTERS_EXCEPT_SLASH`) — only `%2F`/`%2f` stay encoded (what the HttpRule text prescribes for `{+var}`) | `%2f#/ %23` |
//! | `AllCharacters` (`ALL_CHARACTERS`) | `/#/ %23` |
//!
//! Escapes left encoded are copied verbatim (original hex case). Decoding is a single pass
//! (`%2523` → `%23`, never `#`); a `%` not followed by two hex digits is kept as is. If the
//! decoded bytes are not UTF-8 the lookup fails with [`MatchError::InvalidEncoding`].
//!
//! # Deliberate differences from Envoy / grpc-httpjson-transcoding
//!
//! * Envoy drops trailing empty segments (`/v1/shelves/` matches `/v1/shelves`); here a
//!   trailing slash never matches (see above).
//! * Envoy treats `:x` as a verb only if some template registers verb `x` (unless
//!   `match_unregistered_custom_verb`); here both readings are always tried and ranked, which
//!   gives the same result except that a verb-less template may still match `…/a:x` when no
//!   template with verb `x` matches the path.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// What is wrong with a template; see [`TemplateError`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TemplateErrorKind {
    /// The template string is empty.
    Empty,
    /// The template does not start with `/`.
    MissingLeadingSlash,
    /// A segment is empty (`//`, trailing `/`, `{x=}`, or just `/`).
    EmptySegment,
    /// A literal contains a character that is not allowed in a path segment.
    InvalidCharacter(char),
    /// A `%` is not followed by two hex digits.
    InvalidPercentEncoding,
    /// `*` is mixed with other characters in one segment (`*a`, `***`, `a*`).
    WildcardNotWholeSegment,
    /// A variable shares its segment with other characters (`a{b}`, `{a}b`).
    VariableNotWholeSegment,
    /// A variable inside a variable.
    NestedVariable,
    /// A `{` without its `}`.
    UnclosedBrace,
    /// A `}` without its `{`.
    UnmatchedCloseBrace,
    /// The field path is not `IDENT { "." IDENT }`; the string says what was found.
    InvalidFieldPath(String),
    /// The same field path is bound twice.
    DuplicateVariable(String),
    /// A second `**` (the segments after a `**` must be a fixed number).
    SecondDoubleWildcard,
    /// Nothing after the verb's `:`.
    EmptyVerb,
    /// The verb contains a character that is not allowed in a literal.
    InvalidVerb(char),
}

impl fmt::Display for TemplateErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the template is empty"),
            Self::MissingLeadingSlash => f.write_str("the template must start with '/'"),
            Self::EmptySegment => f.write_str("empty path segment"),
            Self::InvalidCharacter(c) => write!(f, "character {c:?} is not allowed in a literal"),
            Self::InvalidPercentEncoding => f.write_str("'%' must be followed by two hex digits"),
            Self::WildcardNotWholeSegment => {
                f.write_str("a wildcard must be a whole segment, '*' or '**'")
            }
            Self::VariableNotWholeSegment => f.write_str("a variable must be a whole segment"),
            Self::NestedVariable => f.write_str("variables cannot be nested"),
            Self::UnclosedBrace => f.write_str("'{' is never closed"),
            Self::UnmatchedCloseBrace => f.write_str("'}' has no matching '{'"),
            Self::InvalidFieldPath(what) => write!(f, "invalid field path: {what}"),
            Self::DuplicateVariable(name) => write!(f, "field path `{name}` is bound twice"),
            Self::SecondDoubleWildcard => f.write_str("a template may contain '**' only once"),
            Self::EmptyVerb => f.write_str("the verb after ':' is empty"),
            Self::InvalidVerb(c) => write!(f, "character {c:?} is not allowed in the verb"),
        }
    }
}

/// A template that does not follow the grammar (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    template: String,
    position: usize,
    kind: TemplateErrorKind,
}

impl TemplateError {
    /// The rejected template text.
    pub fn template(&self) -> &str {
        &self.template
    }
    /// Byte offset in the template where the problem was found.
    pub fn position(&self) -> usize {
        self.position
    }
    /// What the problem is.
    pub fn kind(&self) -> &TemplateErrorKind {
        &self.kind
    }
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid path template {:?} at byte {}: {}",
            self.template, self.position, self.kind
        )
    }
}

impl std::error::Error for TemplateError {}

/// Two templates inserted for the same method match exactly the same paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuplicateBinding {
    /// The HTTP method both were inserted for.
    pub method: String,
    /// The template inserted first ([`PathTemplate::as_str`]).
    pub existing: String,
    /// The template that was refused.
    pub new: String,
    /// Their common [`PathTemplate::canonical`] form.
    pub canonical: String,
}

impl fmt::Display for DuplicateBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "duplicate {} binding: {:?} matches the same paths as {:?} (canonical form {:?})",
            self.method, self.new, self.existing, self.canonical
        )
    }
}

impl std::error::Error for DuplicateBinding {}

/// A request path matched, but a bound value could not be produced.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MatchError {
    /// After percent-decoding, the value of `variable` (its field path) is not UTF-8.
    InvalidEncoding { variable: String },
}

impl fmt::Display for MatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidEncoding { variable } => write!(
                f,
                "the value bound to `{variable}` is not valid UTF-8 after percent-decoding"
            ),
        }
    }
}

impl std::error::Error for MatchError {}

// ---------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------

/// One compiled template segment (variables are flattened into their sub-segments).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    /// Normalised literal (see [`normalize`]).
    Literal(Box<str>),
    /// `*`: exactly one non-empty segment.
    Single,
    /// `**`: zero or more non-empty segments; at most one per template, followed by a
    /// fixed number of segments (often none).
    Rest,
}

impl Seg {
    /// Specificity rank: lower is more specific.
    fn rank(&self) -> u8 {
        match self {
            Seg::Literal(_) => 0,
            Seg::Single => 1,
            Seg::Rest => 2,
        }
    }
}

/// A variable binding of a template, e.g. `{book.name=shelves/*/books/*}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variable {
    /// The field path as written, dotted: `"book.name"`.
    pub field_path: String,
    /// Index of its first segment in the flattened template.
    start: usize,
    /// Number of template segments it spans.
    len: usize,
    /// Whether it contains `**` (and so spans a variable number of segments).
    rest: bool,
}

impl Variable {
    /// The identifiers of the field path: `"book.name"` → `["book", "name"]`.
    pub fn field_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.field_path.split('.')
    }

    /// Whether the variable spans several segments or contains `**`; only such variables
    /// are subject to the [`UnescapeMode`] (single-segment ones are always fully decoded).
    pub fn is_multi_segment(&self) -> bool {
        self.len > 1 || self.rest
    }
}

/// A parsed and compiled `google.api.HttpRule` path template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathTemplate {
    text: String,
    segments: Vec<Seg>,
    variables: Vec<Variable>,
    /// Byte offset of the verb in `text` and its normalised form.
    verb: Option<(usize, Box<str>)>,
    /// Index of the `**` segment, if there is one.
    rest_at: Option<usize>,
}

impl PathTemplate {
    /// Parses and validates `s`; see the module docs for the grammar.
    pub fn parse(s: &str) -> Result<PathTemplate, TemplateError> {
        Parser::new(s).parse()
    }

    /// The original text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The variables, in order of appearance; bindings refer to them by index.
    pub fn variables(&self) -> &[Variable] {
        &self.variables
    }

    /// The custom verb as written (without the `:`), if any.
    pub fn verb(&self) -> Option<&str> {
        self.verb.as_ref().map(|(at, _)| &self.text[*at..])
    }

    /// Number of path segments once variables are flattened (the verb not counted).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Normalised form: variables erased (`{x}`, `{x=*}` and `*` all give `*`), literals and
    /// verb normalised. Two templates match exactly the same paths iff their canonical
    /// forms are equal. `/v1/{name=shelves/*}:x` → `/v1/shelves/*:x`.
    pub fn canonical(&self) -> String {
        let mut out = String::with_capacity(self.text.len());
        for seg in &self.segments {
            out.push('/');
            match seg {
                Seg::Literal(lit) => out.push_str(lit),
                Seg::Single => out.push('*'),
                Seg::Rest => out.push_str("**"),
            }
        }
        if let Some((_, verb)) = &self.verb {
            out.push(':');
            out.push_str(verb);
        }
        out
    }

    fn has_verb(&self) -> bool {
        self.verb.is_some()
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for PathTemplate {
    type Err = TemplateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PathTemplate::parse(s)
    }
}

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// End of the segments (the verb's `:` or the end of the text).
    end: usize,
    segments: Vec<Seg>,
    /// Byte offset of each segment in `src`, parallel to `segments`.
    seg_pos: Vec<usize>,
    variables: Vec<Variable>,
    var_pos: Vec<usize>,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser {
            src,
            bytes: src.as_bytes(),
            pos: 0,
            end: src.len(),
            segments: Vec::new(),
            seg_pos: Vec::new(),
            variables: Vec::new(),
            var_pos: Vec::new(),
        }
    }

    fn err(&self, position: usize, kind: TemplateErrorKind) -> TemplateError {
        TemplateError {
            template: self.src.to_owned(),
            position,
            kind,
        }
    }

    fn peek(&self) -> Option<u8> {
        if self.pos < self.end {
            Some(self.bytes[self.pos])
        } else {
            None
        }
    }

    fn char_at(&self, at: usize) -> char {
        self.src[at..].chars().next().unwrap_or('\u{fffd}')
    }

    fn parse(mut self) -> Result<PathTemplate, TemplateError> {
        use TemplateErrorKind as K;
        if self.src.is_empty() {
            return Err(self.err(0, K::Empty));
        }
        if self.bytes[0] != b'/' {
            return Err(self.err(0, K::MissingLeadingSlash));
        }
        let verb_colon = self.find_verb_colon();
        let mut verb = None;
        if let Some(colon) = verb_colon {
            let at = colon + 1;
            self.check_verb(at)?;
            verb = Some((at, normalize(&self.src[at..]).into_boxed_str()));
            self.end = colon;
        }
        self.pos = 1;
        self.parse_segments(false)?;
        if self.pos < self.end {
            // `parse_segments` stops only at the end or before a stray `}`.
            return Err(self.err(self.pos, K::UnmatchedCloseBrace));
        }
        let rest_at = self.segments.iter().position(|s| *s == Seg::Rest);
        if let Some(first) = rest_at {
            if let Some(i) = self.segments[first + 1..]
                .iter()
                .position(|s| *s == Seg::Rest)
            {
                return Err(self.err(self.seg_pos[first + 1 + i], K::SecondDoubleWildcard));
            }
        }
        for (i, var) in self.variables.iter().enumerate() {
            if self.variables[..i]
                .iter()
                .any(|v| v.field_path == var.field_path)
            {
                let kind = K::DuplicateVariable(var.field_path.clone());
                return Err(self.err(self.var_pos[i], kind));
            }
        }
        Ok(PathTemplate {
            text: self.src.to_owned(),
            segments: self.segments,
            variables: self.variables,
            verb,
            rest_at,
        })
    }

    /// The last `:` outside braces that follows the last `/` outside braces.
    fn find_verb_colon(&self) -> Option<usize> {
        let mut depth = 0usize;
        let mut last_slash = 0;
        let mut colon = None;
        for (i, &b) in self.bytes.iter().enumerate() {
            match b {
                b'{' => depth += 1,
                b'}' => depth = depth.saturating_sub(1),
                b'/' if depth == 0 => last_slash = i,
                b':' if depth == 0 => colon = Some(i),
                _ => {}
            }
        }
        colon.filter(|&c| c > last_slash)
    }

    fn check_verb(&self, at: usize) -> Result<(), TemplateError> {
        if at == self.bytes.len() {
            return Err(self.err(at, TemplateErrorKind::EmptyVerb));
        }
        let mut i = at;
        while i < self.bytes.len() {
            let b = self.bytes[i];
            if b == b'%' {
                if escape_at(self.bytes, i).is_none() {
                    return Err(self.err(i, TemplateErrorKind::InvalidPercentEncoding));
                }
                i += 3;
            } else if is_literal_byte(b) {
                i += 1;
            } else {
                return Err(self.err(i, TemplateErrorKind::InvalidVerb(self.char_at(i))));
            }
        }
        Ok(())
    }

    fn parse_segments(&mut self, in_var: bool) -> Result<(), TemplateError> {
        loop {
            self.parse_segment(in_var)?;
            if self.peek() == Some(b'/') {
                self.pos += 1;
            } else {
                return Ok(());
            }
        }
    }

    fn push_seg(&mut self, seg: Seg, at: usize) {
        self.segments.push(seg);
        self.seg_pos.push(at);
    }

    fn parse_segment(&mut self, in_var: bool) -> Result<(), TemplateError> {
        use TemplateErrorKind as K;
        let start = self.pos;
        match self.peek() {
            None | Some(b'/') => Err(self.err(start, K::EmptySegment)),
            Some(b'}') if in_var => Err(self.err(start, K::EmptySegment)),
            Some(b'}') => Err(self.err(start, K::UnmatchedCloseBrace)),
            Some(b'{') if in_var => Err(self.err(start, K::NestedVariable)),
            Some(b'{') => {
                self.parse_variable()?;
                self.expect_segment_end(in_var, K::VariableNotWholeSegment)
            }
            Some(b'*') => {
                self.pos += 1;
                if self.peek() == Some(b'*') {
                    self.pos += 1;
                    self.push_seg(Seg::Rest, start);
                } else {
                    self.push_seg(Seg::Single, start);
                }
                self.expect_segment_end(in_var, K::WildcardNotWholeSegment)
            }
            Some(_) => self.parse_literal(in_var),
        }
    }

    fn expect_segment_end(
        &self,
        in_var: bool,
        otherwise: TemplateErrorKind,
    ) -> Result<(), TemplateError> {
        match self.peek() {
            None | Some(b'/') => Ok(()),
            Some(b'}') if in_var => Ok(()),
            Some(b'}') => Err(self.err(self.pos, TemplateErrorKind::UnmatchedCloseBrace)),
            Some(b'{') if in_var => Err(self.err(self.pos, TemplateErrorKind::NestedVariable)),
            Some(_) => Err(self.err(self.pos, otherwise)),
        }
    }

    fn parse_literal(&mut self, in_var: bool) -> Result<(), TemplateError> {
        use TemplateErrorKind as K;
        let start = self.pos;
        while let Some(b) = self.peek() {
            match b {
                b'/' => break,
                b'}' if in_var => break,
                b'}' => return Err(self.err(self.pos, K::UnmatchedCloseBrace)),
                b'{' if in_var => return Err(self.err(self.pos, K::NestedVariable)),
                b'{' => return Err(self.err(self.pos, K::VariableNotWholeSegment)),
                b'*' => return Err(self.err(self.pos, K::WildcardNotWholeSegment)),
                b'%' => {
                    if self.pos + 2 >= self.end || escape_at(self.bytes, self.pos).is_none() {
                        return Err(self.err(self.pos, K::InvalidPercentEncoding));
                    }
                    self.pos += 3;
                }
                _ if is_literal_byte(b) => self.pos += 1,
                _ => return Err(self.err(self.pos, K::InvalidCharacter(self.char_at(self.pos)))),
            }
        }
        let lit = normalize(&self.src[start..self.pos]).into_boxed_str();
        self.push_seg(Seg::Literal(lit), start);
        Ok(())
    }

    fn parse_variable(&mut self) -> Result<(), TemplateError> {
        use TemplateErrorKind as K;
        let open = self.pos;
        self.pos += 1;
        let path_start = self.pos;
        loop {
            match self.peek() {
                Some(b) if b.is_ascii_alphabetic() || b == b'_' => self.pos += 1,
                None => return Err(self.err(open, K::UnclosedBrace)),
                Some(b'{') => return Err(self.err(self.pos, K::NestedVariable)),
                Some(_) => {
                    let what = if self.pos == path_start {
                        "expected an identifier after '{'"
                    } else if self.bytes[self.pos - 1] == b'.' {
                        "expected an identifier after '.'"
                    } else {
                        "identifiers must start with a letter or '_'"
                    };
                    return Err(self.err(self.pos, K::InvalidFieldPath(what.to_owned())));
                }
            }
            while matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || b == b'_') {
                self.pos += 1;
            }
            if self.peek() == Some(b'.') {
                self.pos += 1;
            } else {
                break;
            }
        }
        let field_path = self.src[path_start..self.pos].to_owned();
        let first_seg = self.segments.len();
        match self.peek() {
            Some(b'}') => {
                self.pos += 1;
                self.push_seg(Seg::Single, open);
            }
            Some(b'=') => {
                self.pos += 1;
                self.parse_segments(true)?;
                if self.peek() != Some(b'}') {
                    return Err(self.err(open, K::UnclosedBrace));
                }
                self.pos += 1;
            }
            None => return Err(self.err(open, K::UnclosedBrace)),
            Some(b'{') => return Err(self.err(self.pos, K::NestedVariable)),
            Some(_) => {
                let what = format!(
                    "unexpected {:?} (expected '.', '=' or '}}')",
                    self.char_at(self.pos)
                );
                return Err(self.err(self.pos, K::InvalidFieldPath(what)));
            }
        }
        let segs = &self.segments[first_seg..];
        self.variables.push(Variable {
            field_path,
            start: first_seg,
            len: segs.len(),
            rest: segs.contains(&Seg::Rest),
        });
        self.var_pos.push(open);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Percent-encoding helpers
// ---------------------------------------------------------------------------------------

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The byte encoded by a `%HH` escape starting at `i`, if there is one.
fn escape_at(bytes: &[u8], i: usize) -> Option<u8> {
    if bytes.get(i) != Some(&b'%') {
        return None;
    }
    let hi = hex_val(*bytes.get(i + 1)?)?;
    let lo = hex_val(*bytes.get(i + 2)?)?;
    Some((hi << 4) | lo)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 6570 reserved characters (RFC 3986 gen-delims and sub-delims).
fn is_reserved(b: u8) -> bool {
    matches!(
        b,
        b':' | b'/'
            | b'?'
            | b'#'
            | b'['
            | b']'
            | b'@'
            | b'!'
            | b'$'
            | b'&'
            | b'\''
            | b'('
            | b')'
            | b'*'
            | b'+'
            | b','
            | b';'
            | b'='
    )
}

/// RFC 3986 `pchar` minus `%` (handled separately) and `*` (reserved for wildcards).
fn is_literal_byte(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'+' | b',' | b';' | b'=' | b':' | b'@'
        )
}

/// Canonical literal: escapes of unreserved characters decoded, other escapes upper-cased.
fn normalize(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let (mut i, mut run) = (0, 0);
    while i < bytes.len() {
        if let Some(v) = escape_at(bytes, i) {
            out.push_str(&s[run..i]);
            if is_unreserved(v) {
                out.push(char::from(v));
            } else {
                out.push('%');
                out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
                out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
            }
            i += 3;
            run = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&s[run..]);
    out
}

/// Whether raw request text `raw` equals the already normalised `norm`, without allocating.
fn normalized_eq(raw: &str, norm: &str) -> bool {
    let (r, n) = (raw.as_bytes(), norm.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < r.len() {
        match escape_at(r, i) {
            Some(v) if is_unreserved(v) => {
                if n.get(j) != Some(&v) {
                    return false;
                }
                j += 1;
            }
            Some(_) => {
                let want = [
                    b'%',
                    r[i + 1].to_ascii_uppercase(),
                    r[i + 2].to_ascii_uppercase(),
                ];
                if n.get(j..j + 3) != Some(&want[..]) {
                    return false;
                }
                j += 3;
            }
            None => {
                if n.get(j) != Some(&r[i]) {
                    return false;
                }
                i += 1;
                j += 1;
                continue;
            }
        }
        i += 3;
    }
    j == n.len()
}

/// Which bytes stay percent-encoded in a value bound to a variable.
fn keeps_escaped(mode: UnescapeMode, multi_segment: bool, b: u8) -> bool {
    multi_segment
        && match mode {
            UnescapeMode::AllCharactersExceptReserved => is_reserved(b),
            UnescapeMode::AllCharactersExceptSlash => b == b'/',
            UnescapeMode::AllCharacters => false,
        }
}

/// Single-pass percent-decoding; `None` if the result is not UTF-8.
fn decode(raw: &str, mode: UnescapeMode, multi_segment: bool) -> Option<String> {
    let bytes = raw.as_bytes();
    if !bytes.contains(&b'%') {
        return Some(raw.to_owned());
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match escape_at(bytes, i) {
            Some(v) if !keeps_escaped(mode, multi_segment, v) => {
                out.push(v);
                i += 3;
            }
            Some(_) => {
                out.extend_from_slice(&bytes[i..i + 3]);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

// ---------------------------------------------------------------------------------------
// Matcher
// ---------------------------------------------------------------------------------------

/// How bound values are percent-decoded (Envoy's `url_unescape_spec`); the mode only
/// affects multi-segment variables, see the module docs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnescapeMode {
    /// Multi-segment values keep RFC 6570 reserved characters (`:/?#[]@!$&'()*+,;=`)
    /// percent-encoded; everything else is decoded. Envoy's default.
    #[default]
    AllCharactersExceptReserved,
    /// Multi-segment values keep `%2F`/`%2f` encoded; everything else is decoded.
    AllCharactersExceptSlash,
    /// Everything is decoded.
    AllCharacters,
}

/// Result of [`Matcher::find`].
#[derive(Debug, PartialEq, Eq)]
pub enum Match<'a, T> {
    /// The most specific template for this method and path.
    Found {
        value: &'a T,
        /// `(index into template.variables(), decoded value)`, in variable order.
        bindings: Vec<(usize, String)>,
        template: &'a PathTemplate,
    },
    /// Some template matches the path, but not for this method. Sorted, without duplicates.
    MethodNotAllowed { allowed: Vec<String> },
    /// No template matches the path.
    NotFound,
}

/// Fast non-cryptographic hasher for the literal tables. Keys are template literals fixed
/// at build time; request input only probes the table, so flooding is not a concern.
#[derive(Clone, Copy, Debug, Default)]
struct SegHash;

struct SegHasher(u64);

impl SegHasher {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    fn mix(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(Self::K).rotate_left(23);
    }
}

impl Hasher for SegHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let tail = chunks.remainder();
        if !tail.is_empty() {
            let mut word = [0u8; 8];
            word[..tail.len()].copy_from_slice(tail);
            self.mix(u64::from_le_bytes(word) ^ ((tail.len() as u64) << 59));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i));
    }
    fn finish(&self) -> u64 {
        let x = self.0;
        (x ^ (x >> 31)).wrapping_mul(Self::K)
    }
}

impl BuildHasher for SegHash {
    type Hasher = SegHasher;
    fn build_hasher(&self) -> SegHasher {
        SegHasher(0)
    }
}

/// Up to this many literal children are scanned linearly, more go into a hash map.
const SMALL_LITERALS: usize = 8;

#[derive(Debug)]
enum Literals {
    Small(Vec<(Box<str>, usize)>),
    Map(HashMap<Box<str>, usize, SegHash>),
}

impl Default for Literals {
    fn default() -> Self {
        Literals::Small(Vec::new())
    }
}

impl Literals {
    /// Child for an already normalised key (build time).
    fn get_normalized(&self, key: &str) -> Option<usize> {
        match self {
            Literals::Small(v) => v.iter().find(|(k, _)| &**k == key).map(|(_, c)| *c),
            Literals::Map(m) => m.get(key).copied(),
        }
    }

    /// Child for a raw request segment (lookup time).
    fn get_raw(&self, seg: &str) -> Option<usize> {
        if !seg.as_bytes().contains(&b'%') {
            // Without escapes the raw segment is its own normal form.
            return self.get_normalized(seg);
        }
        match self {
            Literals::Small(v) => v
                .iter()
                .find(|(k, _)| normalized_eq(seg, k))
                .map(|(_, c)| *c),
            Literals::Map(m) => m
                .iter()
                .find(|(k, _)| normalized_eq(seg, k))
                .map(|(_, c)| *c),
        }
    }

    fn insert(&mut self, key: Box<str>, child: usize) {
        match self {
            Literals::Small(v) if v.len() < SMALL_LITERALS => v.push((key, child)),
            Literals::Small(v) => {
                let mut m: HashMap<Box<str>, usize, SegHash> =
                    HashMap::with_capacity_and_hasher(v.len() * 2, SegHash);
                m.extend(v.drain(..));
                m.insert(key, child);
                *self = Literals::Map(m);
            }
            Literals::Map(m) => {
                m.insert(key, child);
            }
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Literals::Small(v) => v.is_empty(),
            Literals::Map(m) => m.is_empty(),
        }
    }

    fn shrink(&mut self) {
        match self {
            Literals::Small(v) => v.shrink_to_fit(),
            Literals::Map(m) => m.shrink_to_fit(),
        }
    }
}

#[derive(Debug, Default)]
struct Node {
    literals: Literals,
    single: Option<usize>,
    /// The `**` child: terminals of templates ending at `**`, and children for the fixed
    /// segments that follow it in others (`/a/**/b`); those never hold another `**`.
    rest: Option<usize>,
    /// Entry of the template ending here without a verb.
    end: Option<usize>,
    /// Entries of templates ending here with a verb: (normalised verb, entry).
    end_verbs: Vec<(Box<str>, usize)>,
}

impl Node {
    fn terminal(&self, verb: Option<&str>) -> Option<usize> {
        match verb {
            None => self.end,
            Some(v) => self
                .end_verbs
                .iter()
                .find(|(norm, _)| normalized_eq(v, norm))
                .map(|(_, e)| *e),
        }
    }
}

/// All templates of one method.
#[derive(Debug)]
struct Trie {
    method: Box<str>,
    nodes: Vec<Node>,
}

/// Whether `s` (the remaining path) is one or more non-empty segments.
fn all_segments_non_empty(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('/') && !s.ends_with('/') && !s.contains("//")
}

impl Trie {
    fn new(method: &str) -> Self {
        Trie {
            method: method.into(),
            nodes: vec![Node::default()],
        }
    }

    fn add_node(&mut self) -> usize {
        self.nodes.push(Node::default());
        self.nodes.len() - 1
    }

    /// Best entry for `body` (path without its leading `/`) and verb, in specificity order.
    fn lookup(&self, body: &str, verb: Option<&str>) -> Option<usize> {
        let rest = if body.is_empty() { None } else { Some(body) };
        self.walk(0, rest, verb)
    }

    fn walk(&self, node: usize, rest: Option<&str>, verb: Option<&str>) -> Option<usize> {
        let n = &self.nodes[node];
        let Some(s) = rest else {
            // Path exhausted: a template ending here beats `**` matching nothing.
            return n
                .terminal(verb)
                .or_else(|| n.rest.and_then(|r| self.nodes[r].terminal(verb)));
        };
        // A byte scan: segments are short, and `str::find` sets up a searcher each time.
        let (seg, tail) = match s.bytes().position(|b| b == b'/') {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        };
        if !seg.is_empty() {
            if let Some(child) = n.literals.get_raw(seg) {
                if let Some(e) = self.walk(child, tail, verb) {
                    return Some(e);
                }
            }
            if let Some(child) = n.single {
                if let Some(e) = self.walk(child, tail, verb) {
                    return Some(e);
                }
            }
        }
        self.walk_rest(n.rest?, s, verb)
    }

    /// Matches `s` at the `**` child `r`: `**` takes the first j non-empty segments (j = 0,
    /// 1, …) and a template continuing after it must match the remaining ones exactly. The
    /// longest remainder is tried first, so a template with segments after `**` beats one
    /// ending there (`/a/**/b` beats `/a/**` for `/a/x/b`), and a longer tail beats a
    /// shorter one.
    fn walk_rest(&self, r: usize, s: &str, verb: Option<&str>) -> Option<usize> {
        let node = &self.nodes[r];
        if node.single.is_some() || !node.literals.is_empty() {
            let mut tail = s;
            loop {
                if let Some(e) = self.walk(r, Some(tail), verb) {
                    return Some(e);
                }
                match tail.bytes().position(|b| b == b'/') {
                    // `**` cannot take an empty segment, so no longer prefix can match.
                    Some(0) => return None,
                    Some(i) => tail = &tail[i + 1..],
                    None => break,
                }
            }
        }
        if all_segments_non_empty(s) {
            node.terminal(verb)
        } else {
            None
        }
    }

    /// Whether anything in this trie matches the path, under either verb reading.
    fn matches(&self, body: &str, split: Option<(&str, &str)>) -> bool {
        self.lookup(body, None).is_some()
            || split.is_some_and(|(b, v)| self.lookup(b, Some(v)).is_some())
    }
}

#[derive(Debug)]
struct Entry<T> {
    template: PathTemplate,
    value: T,
}

/// Collects `(method, template, value)` bindings; [`build`](Self::build) freezes them.
#[derive(Debug)]
pub struct MatcherBuilder<T> {
    entries: Vec<Entry<T>>,
    tries: Vec<Trie>,
    /// (trie index, canonical form) → entry, for duplicate detection.
    canonical: HashMap<(usize, String), usize>,
}

impl<T> Default for MatcherBuilder<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> MatcherBuilder<T> {
    pub fn new() -> Self {
        MatcherBuilder {
            entries: Vec::new(),
            tries: Vec::new(),
            canonical: HashMap::new(),
        }
    }

    /// Adds a binding. Fails if a template with the same [`PathTemplate::canonical`] form
    /// was already inserted for `method` (the value is then dropped).
    pub fn insert(
        &mut self,
        method: &str,
        template: PathTemplate,
        value: T,
    ) -> Result<(), DuplicateBinding> {
        let t = match self.tries.iter().position(|t| &*t.method == method) {
            Some(t) => t,
            None => {
                self.tries.push(Trie::new(method));
                self.tries.len() - 1
            }
        };
        let canonical = template.canonical();
        if let Some(&existing) = self.canonical.get(&(t, canonical.clone())) {
            return Err(DuplicateBinding {
                method: method.to_owned(),
                existing: self.entries[existing].template.as_str().to_owned(),
                new: template.as_str().to_owned(),
                canonical,
            });
        }
        let trie = &mut self.tries[t];
        let mut node = 0;
        for seg in &template.segments {
            let existing = match seg {
                Seg::Literal(lit) => trie.nodes[node].literals.get_normalized(lit),
                Seg::Single => trie.nodes[node].single,
                Seg::Rest => trie.nodes[node].rest,
            };
            node = match existing {
                Some(child) => child,
                None => {
                    let child = trie.add_node();
                    let n = &mut trie.nodes[node];
                    match seg {
                        Seg::Literal(lit) => n.literals.insert(lit.clone(), child),
                        Seg::Single => n.single = Some(child),
                        Seg::Rest => n.rest = Some(child),
                    }
                    child
                }
            };
        }
        let n = &mut trie.nodes[node];
        let taken = match &template.verb {
            None => n.end,
            Some((_, verb)) => n.end_verbs.iter().find(|(v, _)| v == verb).map(|(_, e)| *e),
        };
        if let Some(existing) = taken {
            return Err(DuplicateBinding {
                method: method.to_owned(),
                existing: self.entries[existing].template.as_str().to_owned(),
                new: template.as_str().to_owned(),
                canonical,
            });
        }
        let entry = self.entries.len();
        self.canonical.insert((t, canonical), entry);
        match &template.verb {
            None => n.end = Some(entry),
            Some((_, verb)) => n.end_verbs.push((verb.clone(), entry)),
        }
        self.entries.push(Entry { template, value });
        Ok(())
    }

    /// Freezes the bindings into an immutable [`Matcher`].
    pub fn build(mut self) -> Matcher<T> {
        self.tries.sort_by(|a, b| a.method.cmp(&b.method));
        for trie in &mut self.tries {
            trie.nodes.shrink_to_fit();
            for node in &mut trie.nodes {
                node.literals.shrink();
                node.end_verbs.shrink_to_fit();
            }
        }
        self.entries.shrink_to_fit();
        drop(self.canonical);
        Matcher {
            entries: self.entries,
            tries: self.tries,
        }
    }
}

/// Immutable table of compiled templates; `Send + Sync` when `T` is.
#[derive(Debug)]
pub struct Matcher<T> {
    entries: Vec<Entry<T>>,
    /// One trie per method, sorted by method name.
    tries: Vec<Trie>,
}

/// Splits the verb off the last segment of `body`: `(body without ":verb", verb)`.
/// `None` when the last segment has no `:` or the part before or after it is empty.
fn split_verb(body: &str) -> Option<(&str, &str)> {
    // Byte scans (both characters are ASCII): cheaper than `str::rfind`'s searcher on the
    // short paths of every request.
    let bytes = body.as_bytes();
    let last = bytes.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    let colon = last + bytes[last..].iter().rposition(|&b| b == b':')?;
    if colon == last || colon + 1 == body.len() {
        return None;
    }
    Some((&body[..colon], &body[colon + 1..]))
}

/// Walks the segment boundaries of a path body once, left to right.
struct SegCursor<'a> {
    body: &'a str,
    idx: usize,
    pos: usize,
}

impl SegCursor<'_> {
    /// Byte offset where segment `target` starts, or `body.len() + 1` past the last one.
    fn seek(&mut self, target: usize) -> usize {
        while self.idx < target && self.pos <= self.body.len() {
            self.pos = match self.body.as_bytes()[self.pos..]
                .iter()
                .position(|&b| b == b'/')
            {
                Some(i) => self.pos + i + 1,
                None => self.body.len() + 1,
            };
            self.idx += 1;
        }
        if self.idx < target {
            self.body.len() + 1
        } else {
            self.pos
        }
    }
}

impl<T> Matcher<T> {
    /// Number of bindings (method, template) in the table.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Finds the most specific template for `method` and the raw (percent-encoded, no
    /// query) `path`, and decodes its variables according to `mode`.
    pub fn find(
        &self,
        method: &str,
        path: &str,
        mode: UnescapeMode,
    ) -> Result<Match<'_, T>, MatchError> {
        match self.find_for_method(method, path, mode)? {
            Match::NotFound => {
                let allowed = self.allowed_methods(method, path);
                if allowed.is_empty() {
                    Ok(Match::NotFound)
                } else {
                    Ok(Match::MethodNotAllowed { allowed })
                }
            }
            found => Ok(found),
        }
    }

    /// Like [`find`](Self::find), but only looks at `method`'s templates: `NotFound`
    /// instead of `MethodNotAllowed`. For callers that have other places to route a request
    /// to before reporting a 405 (and then ask [`allowed_methods`](Self::allowed_methods)).
    pub fn find_for_method(
        &self,
        method: &str,
        path: &str,
        mode: UnescapeMode,
    ) -> Result<Match<'_, T>, MatchError> {
        let Some(body) = path.strip_prefix('/') else {
            return Ok(Match::NotFound);
        };
        let Some(trie) = self.tries.iter().find(|t| &*t.method == method) else {
            return Ok(Match::NotFound);
        };
        let plain = trie.lookup(body, None).map(|e| (e, body));
        let verbed = split_verb(body).and_then(|(b, v)| trie.lookup(b, Some(v)).map(|e| (e, b)));
        let best = match (plain, verbed) {
            (Some(p), Some(v)) => Some(if self.compare(v.0, p.0) == Ordering::Less {
                v
            } else {
                p
            }),
            (p, v) => p.or(v),
        };
        match best {
            Some((entry, used)) => {
                let entry = &self.entries[entry];
                Ok(Match::Found {
                    value: &entry.value,
                    bindings: bind(&entry.template, used, mode)?,
                    template: &entry.template,
                })
            }
            None => Ok(Match::NotFound),
        }
    }

    /// The methods other than `method` that have a template matching `path` (sorted,
    /// without duplicates; empty when none does).
    pub fn allowed_methods(&self, method: &str, path: &str) -> Vec<String> {
        let Some(body) = path.strip_prefix('/') else {
            return Vec::new();
        };
        let split = split_verb(body);
        self.tries
            .iter()
            .filter(|t| &*t.method != method && t.matches(body, split))
            .map(|t| t.method.to_string())
            .collect()
    }

    /// Specificity order between two entries matching the same request: `Less` if `a` wins.
    fn compare(&self, a: usize, b: usize) -> Ordering {
        let (ta, tb) = (&self.entries[a].template, &self.entries[b].template);
        // Lexicographic; a template that is a strict prefix (ended) sorts first.
        let (ra, rb) = (ta.segments.iter(), tb.segments.iter());
        ra.map(Seg::rank)
            .cmp(rb.map(Seg::rank))
            .then(tb.has_verb().cmp(&ta.has_verb()))
            .then(tb.segments.len().cmp(&ta.segments.len()))
            .then(a.cmp(&b))
    }
}

/// Extracts and decodes the values of `template`'s variables from the matched `body`.
fn bind(
    template: &PathTemplate,
    body: &str,
    mode: UnescapeMode,
) -> Result<Vec<(usize, String)>, MatchError> {
    let mut out = Vec::with_capacity(template.variables.len());
    // Template segment index → path segment index: the same up to the `**`, which took
    // `taken` path segments (zero or more), shifted by `taken - 1` after it.
    let (rest_at, taken) = match template.rest_at {
        Some(q) => {
            let count = if body.is_empty() {
                0
            } else {
                body.bytes().filter(|&b| b == b'/').count() + 1
            };
            (q, (count + 1).saturating_sub(template.segments.len()))
        }
        None => (usize::MAX, 1),
    };
    let to_path = |t: usize| {
        if t <= rest_at {
            t
        } else {
            t + taken - 1
        }
    };
    let mut cursor = SegCursor {
        body,
        idx: 0,
        pos: 0,
    };
    for (i, var) in template.variables.iter().enumerate() {
        let begin = cursor.seek(to_path(var.start)).min(body.len());
        // A variable over zero segments (`**` taking none) ends where it begins.
        let end = cursor.seek(to_path(var.start + var.len)).saturating_sub(1);
        let raw = &body[begin..end.max(begin)];
        match decode(raw, mode, var.is_multi_segment()) {
            Some(value) => out.push((i, value)),
            None => {
                return Err(MatchError::InvalidEncoding {
                    variable: var.field_path.clone(),
                })
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const RES: UnescapeMode = UnescapeMode::AllCharactersExceptReserved;
    const SLASH: UnescapeMode = UnescapeMode::AllCharactersExceptSlash;
    const ALL: UnescapeMode = UnescapeMode::AllCharacters;

    // ----- parsing -----

    /// Parses `t` and checks its canonical form, variables (field paths) and verb.
    #[track_caller]
    fn check_parse(t: &str, canonical: &str, vars: &[&str], verb: Option<&str>) {
        let p = PathTemplate::parse(t).unwrap_or_else(|e| panic!("{t}: {e}"));
        assert_eq!(p.as_str(), t);
        assert_eq!(p.canonical(), canonical, "canonical of {t}");
        let got: Vec<&str> = p
            .variables()
            .iter()
            .map(|v| v.field_path.as_str())
            .collect();
        assert_eq!(got, vars, "variables of {t}");
        assert_eq!(p.verb(), verb, "verb of {t}");
    }

    /// Checks that `t` is rejected at byte `pos` with exactly `msg`.
    #[track_caller]
    fn check_reject(t: &str, pos: usize, msg: &str) {
        let e = PathTemplate::parse(t).expect_err(t);
        assert_eq!(e.template(), t);
        assert_eq!(
            e.to_string(),
            format!("invalid path template {t:?} at byte {pos}: {msg}")
        );
        assert_eq!(e.position(), pos, "{e}");
    }

    #[test]
    #[rustfmt::skip]
    fn parses_every_grammar_element() {
        check_parse("/v1", "/v1", &[], None);
        check_parse("/v1/shelves", "/v1/shelves", &[], None);
        check_parse("/v1/*", "/v1/*", &[], None);
        check_parse("/v1/**", "/v1/**", &[], None);
        check_parse("/**", "/**", &[], None);
        check_parse("/v1/*/x/**", "/v1/*/x/**", &[], None);
        check_parse("/v1/{id}", "/v1/*", &["id"], None);
        check_parse("/v1/{id=*}", "/v1/*", &["id"], None);
        check_parse("/v1/{id=**}", "/v1/**", &["id"], None);
        check_parse("/v1/{id=lit}", "/v1/lit", &["id"], None);
        check_parse("/v1/{_a1.b_2.c}", "/v1/*", &["_a1.b_2.c"], None);
        check_parse("/v1/{book.name=shelves/*/books/*}", "/v1/shelves/*/books/*", &["book.name"], None);
        check_parse("/v1/{name=shelves/*/books/**}", "/v1/shelves/*/books/**", &["name"], None);
        check_parse("/v1/shelves/{shelf}/books/{book}", "/v1/shelves/*/books/*", &["shelf", "book"], None);
        check_parse("/v1/{parent=projects/*}/{rest=**}", "/v1/projects/*/**", &["parent", "rest"], None);
        check_parse("/v1/{name=shelves/*/books/*}:publish", "/v1/shelves/*/books/*:publish", &["name"], Some("publish"));
        check_parse("/v1/{name=shelves/*}:watch", "/v1/shelves/*:watch", &["name"], Some("watch"));
        check_parse("/v1/things:batchGet", "/v1/things:batchGet", &[], Some("batchGet"));
        check_parse("/v1/*:x", "/v1/*:x", &[], Some("x"));
        check_parse("/v1/**:x", "/v1/**:x", &[], Some("x"));
        check_parse("/**/a", "/**/a", &[], None);
        check_parse("/v1/{a=**}/b", "/v1/**/b", &["a"], None);
        check_parse("/v1/{a=x/**/y/*}/{b}:v", "/v1/x/**/y/*/*:v", &["a", "b"], Some("v"));
        check_parse("/v1/a:b:c", "/v1/a:b:c", &[], Some("c"));
        check_parse("/v1/a:b/c", "/v1/a:b/c", &[], None);
        check_parse("/v1/{n=a:b}", "/v1/a:b", &["n"], None);
        check_parse("/v1/{n=a:b}:v", "/v1/a:b:v", &["n"], Some("v"));
        check_parse("/v1.2/a-b_c~d/@me/x;y=z,!$&'()+", "/v1.2/a-b_c~d/@me/x;y=z,!$&'()+", &[], None);
        check_parse("/v1/a%7eb/%2f/%3a", "/v1/a~b/%2F/%3A", &[], None);
        check_parse("/v1/x:do%2Dit", "/v1/x:do-it", &[], Some("do%2Dit"));
    }

    #[test]
    #[rustfmt::skip]
    fn rejects_malformed_templates() {
        check_reject("", 0, "the template is empty");
        check_reject("v1/shelves", 0, "the template must start with '/'");
        check_reject("/", 1, "empty path segment");
        check_reject("//", 1, "empty path segment");
        check_reject("/v1/", 4, "empty path segment");
        check_reject("/v1//a", 4, "empty path segment");
        check_reject("/v1/{a=}", 7, "empty path segment");
        check_reject("/v1/{a=x/}", 9, "empty path segment");
        check_reject("/v1/{a={b}}", 7, "variables cannot be nested");
        check_reject("/v1/{a=x/{b}}", 9, "variables cannot be nested");
        check_reject("/v1/{a{b}}", 6, "variables cannot be nested");
        check_reject("/v1/{a", 4, "'{' is never closed");
        check_reject("/v1/{a=*", 4, "'{' is never closed");
        check_reject("/v1/{a=shelves/*/books", 4, "'{' is never closed");
        check_reject("/v1/a}", 5, "'}' has no matching '{'");
        check_reject("/v1/{a}}", 7, "'}' has no matching '{'");
        check_reject("/v1/}", 4, "'}' has no matching '{'");
        check_reject("/v1/*}", 5, "'}' has no matching '{'");
        check_reject("/v1/{a}/{a}", 8, "field path `a` is bound twice");
        check_reject("/v1/{a.b}/{c}/{a.b=**}", 14, "field path `a.b` is bound twice");
        check_reject("/v1/{1a}", 5, "invalid field path: expected an identifier after '{'");
        check_reject("/v1/{}", 5, "invalid field path: expected an identifier after '{'");
        check_reject("/v1/{.a}", 5, "invalid field path: expected an identifier after '{'");
        check_reject("/v1/{a.}", 7, "invalid field path: expected an identifier after '.'");
        check_reject("/v1/{a..b}", 7, "invalid field path: expected an identifier after '.'");
        check_reject("/v1/{a-b}", 6, "invalid field path: unexpected '-' (expected '.', '=' or '}')");
        check_reject("/v1/{a b}", 6, "invalid field path: unexpected ' ' (expected '.', '=' or '}')");
        check_reject("/v1/**/**", 7, "a template may contain '**' only once");
        check_reject("/**/a/{b=**}", 9, "a template may contain '**' only once");
        check_reject("/v1/{a=**}/{b=x/**}", 16, "a template may contain '**' only once");
        check_reject("/v1/***", 6, "a wildcard must be a whole segment, '*' or '**'");
        check_reject("/v1/*a", 5, "a wildcard must be a whole segment, '*' or '**'");
        check_reject("/v1/a*", 5, "a wildcard must be a whole segment, '*' or '**'");
        check_reject("/v1/a{b}", 5, "a variable must be a whole segment");
        check_reject("/v1/{a}b", 7, "a variable must be a whole segment");
        check_reject("/v1/{a}{b}", 7, "a variable must be a whole segment");
        check_reject("/v1/a b", 5, "character ' ' is not allowed in a literal");
        check_reject("/v1/a?b", 5, "character '?' is not allowed in a literal");
        check_reject("/v1/é", 4, "character 'é' is not allowed in a literal");
        check_reject("/v1/a%zz", 5, "'%' must be followed by two hex digits");
        check_reject("/v1/a%2", 5, "'%' must be followed by two hex digits");
        check_reject("/v1/a%2:x", 5, "'%' must be followed by two hex digits");
        check_reject("/v1/a:", 6, "the verb after ':' is empty");
        check_reject("/v1/{a}:", 8, "the verb after ':' is empty");
        check_reject("/v1/a:b*", 7, "character '*' is not allowed in the verb");
        check_reject("/v1/a:b}", 7, "character '}' is not allowed in the verb");
        check_reject("/v1/a:%g0", 6, "'%' must be followed by two hex digits");
    }

    #[test]
    fn error_accessors_and_variable_metadata() {
        let e = PathTemplate::parse("/v1/{a}/{a}").expect_err("duplicate");
        assert_eq!(e.kind(), &TemplateErrorKind::DuplicateVariable("a".into()));
        let t: PathTemplate = "/v1/{book.name=shelves/*/books/*}/{x}/{z=lit}/{y=**}"
            .parse()
            .expect("valid");
        let multi: Vec<bool> = t
            .variables()
            .iter()
            .map(Variable::is_multi_segment)
            .collect();
        assert_eq!(multi, [true, false, false, true]);
        let names: Vec<&str> = t.variables()[0].field_names().collect();
        assert_eq!(names, ["book", "name"]);
        assert_eq!(t.segment_count(), 8);
        assert_eq!(t.to_string(), t.as_str());
    }

    // ----- matching -----

    enum Want {
        /// Winning template text and `(field path, value)` bindings.
        Found(&'static str, &'static [(&'static str, &'static str)]),
        NotAllowed(&'static [&'static str]),
        NotFound,
        BadUtf8(&'static str),
    }
    use Want::*;

    /// Builds a matcher whose values are the template texts.
    fn matcher(routes: &[(&str, &str)]) -> Matcher<String> {
        let mut b = MatcherBuilder::new();
        for (method, t) in routes {
            let tpl = PathTemplate::parse(t).unwrap_or_else(|e| panic!("{e}"));
            b.insert(method, tpl, (*t).to_owned())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        b.build()
    }

    #[track_caller]
    fn check(m: &Matcher<String>, method: &str, path: &str, mode: UnescapeMode, want: Want) {
        let got = m.find(method, path, mode);
        let ctx = format!("{method} {path} ({mode:?})");
        match (got, want) {
            (
                Ok(Match::Found {
                    value,
                    bindings,
                    template,
                }),
                Found(t, binds),
            ) => {
                assert_eq!(template.as_str(), t, "{ctx}");
                assert_eq!(value, t, "{ctx}");
                let vars = template.variables();
                let got: Vec<(&str, &str)> = bindings
                    .iter()
                    .map(|(i, v)| (vars[*i].field_path.as_str(), v.as_str()))
                    .collect();
                assert_eq!(got, binds, "{ctx}");
            }
            (Ok(Match::MethodNotAllowed { allowed }), NotAllowed(want)) => {
                assert_eq!(allowed, want, "{ctx}")
            }
            (Ok(Match::NotFound), NotFound) => {}
            (Err(MatchError::InvalidEncoding { variable }), BadUtf8(v)) => {
                assert_eq!(variable, v, "{ctx}")
            }
            (got, _) => panic!("{ctx}: unexpected {got:?}"),
        }
    }

    #[test]
    #[rustfmt::skip]
    fn matches_literals_wildcards_and_variables() {
        let m = matcher(&[
            ("GET", "/v1/shelves"),
            ("GET", "/v1/shelves/{shelf}/books/{book}"),
            ("GET", "/v1/{book.name=shelves/*/books/*}/pages/*"),
            ("GET", "/v2/*/x"),
            ("GET", "/v3/{name=files/**}"),
            ("GET", "/v4/{parent=projects/*}/{path=**}"),
            ("GET", "/v5/{id=lit}"),
            ("GET", "/{all=**}:root"),
        ]);
        check(&m, "GET", "/v1/shelves", RES, Found("/v1/shelves", &[]));
        check(&m, "GET", "/v1/shelves/s1/books/b2", RES, Found("/v1/shelves/{shelf}/books/{book}", &[("shelf", "s1"), ("book", "b2")]));
        check(&m, "GET", "/v1/shelves/s1/books/b2/pages/7", RES, Found("/v1/{book.name=shelves/*/books/*}/pages/*", &[("book.name", "shelves/s1/books/b2")]));
        check(&m, "GET", "/v2/anything/x", RES, Found("/v2/*/x", &[]));
        check(&m, "GET", "/v2/anything/y", RES, NotFound);
        check(&m, "GET", "/v3/files", RES, Found("/v3/{name=files/**}", &[("name", "files")]));
        check(&m, "GET", "/v3/files/a/b/c.txt", RES, Found("/v3/{name=files/**}", &[("name", "files/a/b/c.txt")]));
        check(&m, "GET", "/v3/other/a", RES, NotFound);
        check(&m, "GET", "/v4/projects/p/a/b", RES, Found("/v4/{parent=projects/*}/{path=**}", &[("parent", "projects/p"), ("path", "a/b")]));
        check(&m, "GET", "/v4/projects/p", RES, Found("/v4/{parent=projects/*}/{path=**}", &[("parent", "projects/p"), ("path", "")]));
        check(&m, "GET", "/v5/lit", RES, Found("/v5/{id=lit}", &[("id", "lit")]));
        check(&m, "GET", "/v5/other", RES, NotFound);
        check(&m, "GET", "/:root", RES, NotFound);
        check(&m, "GET", "/a/b:root", RES, Found("/{all=**}:root", &[("all", "a/b")]));
        check(&m, "GET", "v1/shelves", RES, NotFound);
        check(&m, "GET", "", RES, NotFound);
    }

    #[test]
    #[rustfmt::skip]
    fn segments_after_a_double_wildcard() {
        // Shapes from Envoy's path-matcher and grpc-gateway's pattern tests: a fixed tail
        // after `**`, inside a variable or after it, with and without a verb.
        let m = matcher(&[
            ("GET", "/a/{x=b/**}/z"),
            ("GET", "/a/{x=b/**}"),
            ("GET", "/c/{x=*}/{y=d/**}/e:verb"),
            ("GET", "/f/{x=g/*/**/y/z}/foo"),
            ("GET", "/{x=**}/a/b"),
            ("GET", "/alpha/{x=*}/beta/{y=**}/gamma"),
            ("GET", "/t/**/*/lit"),
            ("GET", "/t/**/*"),
        ]);
        check(&m, "GET", "/a/b/z", RES, Found("/a/{x=b/**}/z", &[("x", "b")]));
        check(&m, "GET", "/a/b/c/d/z", RES, Found("/a/{x=b/**}/z", &[("x", "b/c/d")]));
        // The template with a tail beats the one ending at `**`; without `z` only that one.
        check(&m, "GET", "/a/b/c/d", RES, Found("/a/{x=b/**}", &[("x", "b/c/d")]));
        check(&m, "GET", "/a/b/z/z", RES, Found("/a/{x=b/**}/z", &[("x", "b/z")]));
        check(&m, "GET", "/c/1/d/e:verb", RES, Found("/c/{x=*}/{y=d/**}/e:verb", &[("x", "1"), ("y", "d")]));
        check(&m, "GET", "/c/1/d/2/3/e:verb", RES, Found("/c/{x=*}/{y=d/**}/e:verb", &[("x", "1"), ("y", "d/2/3")]));
        check(&m, "GET", "/c/1/d/2/e", RES, NotFound);
        check(&m, "GET", "/f/g/1/y/z/foo", RES, Found("/f/{x=g/*/**/y/z}/foo", &[("x", "g/1/y/z")]));
        check(&m, "GET", "/f/g/1/2/3/y/z/foo", RES, Found("/f/{x=g/*/**/y/z}/foo", &[("x", "g/1/2/3/y/z")]));
        check(&m, "GET", "/f/g/1/y/foo", RES, NotFound);
        check(&m, "GET", "/a/b", RES, Found("/a/{x=b/**}", &[("x", "b")]));
        check(&m, "GET", "/p/q/a/b", RES, Found("/{x=**}/a/b", &[("x", "p/q")]));
        check(&m, "GET", "/x/a/b", RES, Found("/{x=**}/a/b", &[("x", "x")]));
        check(&m, "GET", "/alpha/1/beta/gamma", RES, Found("/alpha/{x=*}/beta/{y=**}/gamma", &[("x", "1"), ("y", "")]));
        check(&m, "GET", "/alpha/1/beta/2/3/gamma", RES, Found("/alpha/{x=*}/beta/{y=**}/gamma", &[("x", "1"), ("y", "2/3")]));
        check(&m, "GET", "/alpha/1/beta/2/3", RES, NotFound);
        // The longer tail wins; `**` never takes an empty segment.
        check(&m, "GET", "/t/1/2/lit", RES, Found("/t/**/*/lit", &[]));
        check(&m, "GET", "/t/1/2/other", RES, Found("/t/**/*", &[]));
        check(&m, "GET", "/t/x", RES, Found("/t/**/*", &[]));
        check(&m, "GET", "/t//x", RES, NotFound);
        check(&m, "GET", "/t/x/", RES, NotFound);
        // Multi-segment values keep reserved escapes, as at the end of a template.
        check(&m, "GET", "/a/b/c%2Fd/z", RES, Found("/a/{x=b/**}/z", &[("x", "b/c%2Fd")]));
        check(&m, "GET", "/a/b/c%2Fd/z", ALL, Found("/a/{x=b/**}/z", &[("x", "b/c/d")]));
    }

    #[test]
    #[rustfmt::skip]
    fn trailing_slash_and_empty_segments_do_not_match() {
        let m = matcher(&[
            ("GET", "/v1/shelves"),
            ("GET", "/v1/*/x"),
            ("GET", "/v2/{name=**}"),
            ("GET", "/{root=**}"),
        ]);
        check(&m, "GET", "/v1/shelves/", RES, NotFound);
        check(&m, "GET", "/v1//x", RES, NotFound);
        check(&m, "GET", "/v1/a/x/", RES, NotFound);
        check(&m, "GET", "/v2", RES, Found("/v2/{name=**}", &[("name", "")]));
        check(&m, "GET", "/v2/", RES, NotFound);
        check(&m, "GET", "/v2/a//b", RES, NotFound);
        check(&m, "GET", "/v2/a/b", RES, Found("/v2/{name=**}", &[("name", "a/b")]));
        check(&m, "GET", "/", RES, Found("/{root=**}", &[("root", "")]));
        check(&m, "GET", "//", RES, NotFound);
    }

    #[test]
    #[rustfmt::skip]
    fn verbs() {
        let m = matcher(&[
            ("POST", "/v1/{name=shelves/*/books/*}:publish"),
            ("GET", "/v1/{name=shelves/*/books/*}"),
            ("GET", "/v2/{name=**}"),
            ("POST", "/v3/{name}:cancel"),
            ("POST", "/v3/{name}"),
            ("POST", "/v4/{name=**}:undelete"),
            ("GET", "/v5/things:batchGet"),
            ("GET", "/v5/things/{id}"),
        ]);
        check(&m, "POST", "/v1/shelves/s/books/b:publish", RES, Found("/v1/{name=shelves/*/books/*}:publish", &[("name", "shelves/s/books/b")]));
        // A template with a verb never matches a path without it.
        check(&m, "POST", "/v1/shelves/s/books/b", RES, NotAllowed(&["GET"]));
        check(&m, "POST", "/v1/shelves/s/books/b:other", RES, NotAllowed(&["GET"]));
        // Read as part of the segment, the colon stays in the value.
        check(&m, "GET", "/v1/shelves/s/books/b:publish", RES, Found("/v1/{name=shelves/*/books/*}", &[("name", "shelves/s/books/b:publish")]));
        check(&m, "GET", "/v2/a:b", RES, Found("/v2/{name=**}", &[("name", "a:b")]));
        check(&m, "GET", "/v2/x/a:b:c", RES, Found("/v2/{name=**}", &[("name", "x/a:b:c")]));
        // Verb beats no verb; with another suffix the plain template keeps the colon.
        check(&m, "POST", "/v3/op1:cancel", RES, Found("/v3/{name}:cancel", &[("name", "op1")]));
        check(&m, "POST", "/v3/op1:other", RES, Found("/v3/{name}", &[("name", "op1:other")]));
        check(&m, "POST", "/v3/a:b:cancel", RES, Found("/v3/{name}:cancel", &[("name", "a:b")]));
        check(&m, "POST", "/v3/:cancel", RES, Found("/v3/{name}", &[("name", ":cancel")]));
        check(&m, "POST", "/v3/op1:", RES, Found("/v3/{name}", &[("name", "op1:")]));
        check(&m, "POST", "/v3/op%3Acancel", RES, Found("/v3/{name}", &[("name", "op:cancel")]));
        check(&m, "POST", "/v4/a/b:undelete", RES, Found("/v4/{name=**}:undelete", &[("name", "a/b")]));
        check(&m, "POST", "/v4:undelete", RES, Found("/v4/{name=**}:undelete", &[("name", "")]));
        check(&m, "POST", "/v4/a/b", RES, NotFound);
        // Literal + verb beats a variable; verbs compare after normalisation.
        check(&m, "GET", "/v5/things:batchGet", RES, Found("/v5/things:batchGet", &[]));
        check(&m, "GET", "/v5/things:batch%47et", RES, Found("/v5/things:batchGet", &[]));
        check(&m, "GET", "/v5/things/t1", RES, Found("/v5/things/{id}", &[("id", "t1")]));
        check(&m, "GET", "/v5/things:other", RES, NotFound);
    }

    #[test]
    #[rustfmt::skip]
    fn unescape_modes() {
        let m = matcher(&[
            ("GET", "/s/{x}"),
            ("GET", "/m/{x=**}"),
            ("GET", "/p/{x=a/*}"),
            ("GET", "/l/{x=lit}/{y=*}"),
        ]);
        // Single-segment variables: fully decoded in every mode; %2F does not split.
        for mode in [RES, SLASH, ALL] {
            check(&m, "GET", "/s/a%2Fb%20c%3Ad%7Ee", mode, Found("/s/{x}", &[("x", "a/b c:d~e")]));
            check(&m, "GET", "/s/%C3%A9%2523", mode, Found("/s/{x}", &[("x", "é%23")]));
            check(&m, "GET", "/s/100%", mode, Found("/s/{x}", &[("x", "100%")]));
            check(&m, "GET", "/s/%zz%4", mode, Found("/s/{x}", &[("x", "%zz%4")]));
            check(&m, "GET", "/s/%41", mode, Found("/s/{x}", &[("x", "A")]));
            check(&m, "GET", "/s/%FF", mode, BadUtf8("x"));
            check(&m, "GET", "/m/ok/%ff", mode, BadUtf8("x"));
            check(&m, "GET", "/l/lit/%2F", mode, Found("/l/{x=lit}/{y=*}", &[("x", "lit"), ("y", "/")]));
        }
        // Multi-segment variables follow the mode.
        check(&m, "GET", "/m/a%2Fb/c%20d%3A%7E", RES, Found("/m/{x=**}", &[("x", "a%2Fb/c d%3A~")]));
        check(&m, "GET", "/m/a%2Fb/c%20d%3A%7E", SLASH, Found("/m/{x=**}", &[("x", "a%2Fb/c d:~")]));
        check(&m, "GET", "/m/a%2Fb/c%20d%3A%7E", ALL, Found("/m/{x=**}", &[("x", "a/b/c d:~")]));
        // Envoy's documented example, segment `%2f%23/%20%2523`.
        check(&m, "GET", "/m/%2f%23/%20%2523", RES, Found("/m/{x=**}", &[("x", "%2f%23/ %23")]));
        check(&m, "GET", "/m/%2f%23/%20%2523", SLASH, Found("/m/{x=**}", &[("x", "%2f#/ %23")]));
        check(&m, "GET", "/m/%2f%23/%20%2523", ALL, Found("/m/{x=**}", &[("x", "/#/ %23")]));
        // `**` that matched a single segment is still multi-segment.
        check(&m, "GET", "/m/a%2Fb", RES, Found("/m/{x=**}", &[("x", "a%2Fb")]));
        check(&m, "GET", "/m/a%2Fb", ALL, Found("/m/{x=**}", &[("x", "a/b")]));
        check(&m, "GET", "/p/a/b%2Fc%3A", RES, Found("/p/{x=a/*}", &[("x", "a/b%2Fc%3A")]));
        check(&m, "GET", "/p/a/b%2Fc%3A", SLASH, Found("/p/{x=a/*}", &[("x", "a/b%2Fc:")]));
        check(&m, "GET", "/p/a/b%2Fc%3A", ALL, Found("/p/{x=a/*}", &[("x", "a/b/c:")]));
        check(&m, "GET", "/p/a/%FF", RES, BadUtf8("x"));
    }

    #[test]
    #[rustfmt::skip]
    fn literals_compare_after_normalising_escapes() {
        let m = matcher(&[
            ("GET", "/v1/a~b"),
            ("GET", "/v1/c%3Ad"),
            ("GET", "/v1/e%7ef"),
            ("GET", "/v1/{other}"),
        ]);
        check(&m, "GET", "/v1/a~b", RES, Found("/v1/a~b", &[]));
        check(&m, "GET", "/v1/a%7Eb", RES, Found("/v1/a~b", &[]));
        check(&m, "GET", "/v1/a%7eb", RES, Found("/v1/a~b", &[]));
        check(&m, "GET", "/%76%31/a~b", RES, Found("/v1/a~b", &[]));
        check(&m, "GET", "/v1/c%3ad", RES, Found("/v1/c%3Ad", &[]));
        check(&m, "GET", "/v1/c:d", RES, Found("/v1/{other}", &[("other", "c:d")]));
        check(&m, "GET", "/v1/e~f", RES, Found("/v1/e%7ef", &[]));
        check(&m, "GET", "/v1/a%7Eb%20", RES, Found("/v1/{other}", &[("other", "a~b ")]));
    }

    #[test]
    #[rustfmt::skip]
    fn most_specific_template_wins() {
        let m = matcher(&[
            ("GET", "/v1/{name=**}"),
            ("GET", "/v1/shelves/{id}"),
            ("GET", "/v1/shelves/special"),
            ("GET", "/v2/{a}/x"),
            ("GET", "/v2/x/{b}"),
            ("GET", "/v3/*/**"),
            ("GET", "/v3/*"),
            ("GET", "/v4/**"),
            ("GET", "/v4/*/*/**"),
        ]);
        check(&m, "GET", "/v1/shelves/special", RES, Found("/v1/shelves/special", &[]));
        check(&m, "GET", "/v1/shelves/s1", RES, Found("/v1/shelves/{id}", &[("id", "s1")]));
        check(&m, "GET", "/v1/books/b1", RES, Found("/v1/{name=**}", &[("name", "books/b1")]));
        check(&m, "GET", "/v1/shelves/s1/x", RES, Found("/v1/{name=**}", &[("name", "shelves/s1/x")]));
        check(&m, "GET", "/v2/x/x", RES, Found("/v2/x/{b}", &[("b", "x")]));
        check(&m, "GET", "/v2/y/x", RES, Found("/v2/{a}/x", &[("a", "y")]));
        check(&m, "GET", "/v3/a", RES, Found("/v3/*", &[]));
        check(&m, "GET", "/v3/a/b", RES, Found("/v3/*/**", &[]));
        check(&m, "GET", "/v4/a", RES, Found("/v4/**", &[]));
        check(&m, "GET", "/v4/a/b", RES, Found("/v4/*/*/**", &[]));
        check(&m, "GET", "/v4/a/b/c", RES, Found("/v4/*/*/**", &[]));
        // Insertion order does not matter.
        for routes in [
            [("GET", "/v1/{name=**}"), ("GET", "/v1/{name=shelves/*}")],
            [("GET", "/v1/{name=shelves/*}"), ("GET", "/v1/{name=**}")],
        ] {
            let m = matcher(&routes);
            check(&m, "GET", "/v1/shelves/s1", RES, Found("/v1/{name=shelves/*}", &[("name", "shelves/s1")]));
            check(&m, "GET", "/v1/shelves", RES, Found("/v1/{name=**}", &[("name", "shelves")]));
            check(&m, "GET", "/v1/shelves/s1/b", RES, Found("/v1/{name=**}", &[("name", "shelves/s1/b")]));
        }
    }

    #[test]
    #[rustfmt::skip]
    fn method_not_allowed_lists_methods() {
        let m = matcher(&[
            ("GET", "/v1/shelves/{id}"),
            ("DELETE", "/v1/shelves/{id}"),
            ("PATCH", "/v1/{name=shelves/*}"),
            ("POST", "/v1/shelves"),
            ("SEARCH", "/v1/shelves"),
            ("POST", "/v1/shelves/{id}:archive"),
        ]);
        check(&m, "PUT", "/v1/shelves/s1", RES, NotAllowed(&["DELETE", "GET", "PATCH"]));
        check(&m, "GET", "/v1/shelves", RES, NotAllowed(&["POST", "SEARCH"]));
        check(&m, "SEARCH", "/v1/shelves", RES, Found("/v1/shelves", &[]));
        check(&m, "GET", "/v1/shelves/s1:archive", RES, Found("/v1/shelves/{id}", &[("id", "s1:archive")]));
        check(&m, "PUT", "/v1/shelves/s1:archive", RES, NotAllowed(&["DELETE", "GET", "PATCH", "POST"]));
        check(&m, "get", "/v1/shelves", RES, NotAllowed(&["POST", "SEARCH"]));
        check(&m, "GET", "/v1/nope", RES, NotFound);
        check(&m, "PUT", "/v1/nope", RES, NotFound);
    }

    /// Inserts `a` then `b` for the given methods; `dup` says whether `b` must be refused.
    #[track_caller]
    fn check_dup(ma: &str, a: &str, mb: &str, b: &str, dup: bool) {
        let mut builder = MatcherBuilder::new();
        let ta = PathTemplate::parse(a).expect("valid a");
        let tb = PathTemplate::parse(b).expect("valid b");
        builder.insert(ma, ta, 1).expect("first insert");
        match builder.insert(mb, tb.clone(), 2) {
            Ok(()) => assert!(!dup, "{a} / {b} should clash"),
            Err(e) => {
                assert!(dup, "{a} / {b} should not clash: {e}");
                let canonical = tb.canonical();
                let msg = format!(
                    "duplicate {mb} binding: {b:?} matches the same paths as {a:?} \
                     (canonical form {canonical:?})"
                );
                assert_eq!(e.to_string(), msg);
                let want = DuplicateBinding {
                    method: mb.into(),
                    existing: a.into(),
                    new: b.into(),
                    canonical,
                };
                assert_eq!(e, want);
            }
        }
        assert_eq!(builder.build().len(), if dup { 1 } else { 2 });
    }

    #[test]
    #[rustfmt::skip]
    fn duplicates_detected_through_canonical_form() {
        check_dup("GET", "/v1/{a}", "GET", "/v1/{b=*}", true);
        check_dup("GET", "/v1/{a}", "POST", "/v1/{b=*}", false);
        check_dup("GET", "/v1/{a}", "GET", "/v1/*", true);
        check_dup("GET", "/v1/{a=shelves/*}", "GET", "/v1/shelves/{b}", true);
        check_dup("GET", "/v1/{a=**}", "GET", "/v1/**", true);
        check_dup("GET", "/v1/a~b", "GET", "/v1/a%7Eb", true);
        check_dup("GET", "/v1/a%3a", "GET", "/v1/a%3A", true);
        check_dup("GET", "/v1/{a}:x", "GET", "/v1/{b}:x", true);
        check_dup("GET", "/v1/{a}:x", "GET", "/v1/{b}:y", false);
        check_dup("GET", "/v1/{a}:x", "GET", "/v1/{b}", false);
        check_dup("GET", "/v1/{a}", "GET", "/v1/{a}/x", false);
        check_dup("GET", "/v1/*", "GET", "/v1/**", false);
        check_dup("GET", "/v1/a:b/c", "GET", "/v1/{x}/c", false);
        // Same path set, different shapes (colon inside a literal vs a verb).
        check_dup("GET", "/v1/{n=a:b}", "GET", "/v1/a:b", true);
    }

    #[test]
    fn thousand_templates() {
        let mut routes = Vec::new();
        for i in 0..250 {
            let v = i % 7;
            routes.push(("GET", format!("/api/v{v}/svc{i}/items/{{id}}")));
            routes.push(("POST", format!("/api/v{v}/svc{i}/items/{{id}}:run")));
            routes.push(("GET", format!("/api/v{v}/svc{i}/{{name=items/*/parts/**}}")));
            routes.push(("DELETE", format!("/api/v{v}/{{svc}}/items/item{i}")));
        }
        let mut b = MatcherBuilder::new();
        for (k, (method, t)) in routes.iter().enumerate() {
            let tpl = PathTemplate::parse(t).expect("valid");
            b.insert(method, tpl, k).expect("unique");
        }
        let catch_all = PathTemplate::parse("/{all=**}").expect("valid");
        b.insert("GET", catch_all, usize::MAX).expect("unique");
        let m = b.build();
        assert_eq!(m.len(), 1001);
        assert!(!m.is_empty());
        let found = |method: &str, path: &str| match m.find(method, path, RES) {
            Ok(Match::Found {
                value, bindings, ..
            }) => (*value, bindings),
            other => panic!("{method} {path}: {other:?}"),
        };
        let one = |s: String| vec![(0, s)];
        for i in 0..250 {
            let v = i % 7;
            let got = found("GET", &format!("/api/v{v}/svc{i}/items/it%20{i}"));
            assert_eq!(got, (4 * i, one(format!("it {i}"))));
            let got = found("POST", &format!("/api/v{v}/svc{i}/items/x:run"));
            assert_eq!(got, (4 * i + 1, one("x".into())));
            let got = found("GET", &format!("/api/v{v}/svc{i}/items/x/parts/p/q"));
            assert_eq!(got, (4 * i + 2, one("items/x/parts/p/q".into())));
            let got = found("DELETE", &format!("/api/v{v}/svc{i}/items/item{i}"));
            assert_eq!(got, (4 * i + 3, one(format!("svc{i}"))));
            let got = found("GET", &format!("/api/v{v}/svc{i}/other"));
            assert_eq!(got.0, usize::MAX);
        }
        assert!(matches!(
            m.find("PUT", "/api/v0/svc0/items/x", RES),
            Ok(Match::MethodNotAllowed { allowed }) if allowed == ["GET"]
        ));
        assert!(matches!(
            m.find("PUT", "/x", RES),
            Ok(Match::MethodNotAllowed { .. })
        ));
        assert!(matches!(m.find("PUT", "/x/", RES), Ok(Match::NotFound)));
    }

    #[test]
    fn matcher_is_send_and_sync() {
        fn assert_send_sync<X: Send + Sync>() {}
        assert_send_sync::<Matcher<String>>();
        assert_send_sync::<PathTemplate>();
        let m: Matcher<u8> = MatcherBuilder::default().build();
        assert!(m.is_empty());
        assert!(matches!(m.find("GET", "/", RES), Ok(Match::NotFound)));
    }

    #[test]
    #[rustfmt::skip]
    fn percent_helpers() {
        for (raw, norm, eq) in [
            ("abc", "abc", true),
            ("%61bc", "abc", true),
            ("a%2fc", "a%2Fc", true),
            ("a%2Fc", "a/c", false),
            ("ab", "abc", false),
            ("abcd", "abc", false),
            ("%2", "%2", true),
            ("a%7E", "a~", true),
        ] {
            assert_eq!(normalized_eq(raw, norm), eq, "{raw} vs {norm}");
        }
        assert_eq!(normalize("%7e%7E%2f%41x"), "~~%2FAx");
        assert_eq!(decode("%41%2F", RES, true).as_deref(), Some("A%2F"));
        assert_eq!(decode("%41%2F", RES, false).as_deref(), Some("A/"));
        assert_eq!(split_verb("a/b:c"), Some(("a/b", "c")));
        assert_eq!(split_verb("a:x/b"), None);
        assert_eq!(split_verb("a/:c"), None);
        assert_eq!(split_verb("a/b:"), None);
    }
}
