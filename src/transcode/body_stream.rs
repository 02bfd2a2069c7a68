//! A streamed request body split into the JSON texts of its messages, as they arrive.
//!
//! In: the body of a client-streaming (or bidi) REST call. Out: one `(Place, text)` per
//! message, as soon as the message is complete, then the end, or one error (a body error, or
//! a body that is not a well-formed sequence) after which the stream ends.
//!
//! Two framings, told apart by the body's first non-blank byte:
//! - **NDJSON** (the default): one message per non-blank line; `Place::Line` is the 1-based
//!   line in the body, blank lines counted, so errors name the line the client sees.
//! - **A JSON array** (`[` first), the form Envoy's transcoder takes client streams in: one
//!   message per element, each handed on when the `,` or `]` after it arrives. Elements are
//!   split by a scan that only tracks strings and nesting; each element is then parsed on its
//!   own, so a malformed one is reported with its position (`Place::Element`).
//!
//! Written by hand: serde_json's `StreamDeserializer` reads whitespace-separated values but
//! not the elements of one array incrementally, and neither needs more than this scan.

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::stream::{self, BoxStream};
use futures_util::StreamExt;
use http_body_util::BodyExt;

use crate::error::Error;
use crate::request::Body;
use crate::transcode::rest::body_error;

/// Where a message of a streamed body is, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// The 1-based line of an NDJSON body.
    Line(usize),
    /// The 1-based position of an element of a JSON-array body.
    Element(usize),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Line(n) => write!(f, "line {n}"),
            Place::Element(n) => write!(f, "array element {n}"),
        }
    }
}

/// The messages of `body`, in order; see the module docs.
pub fn messages(body: Body) -> BoxStream<'static, Result<(Place, Bytes), Error>> {
    let state = Split {
        body,
        buffer: BytesMut::new(),
        done: false,
        mode: Mode::Undecided,
    };
    stream::unfold(Some(state), |state| async move {
        let mut s = state?;
        loop {
            match s.next() {
                Step::Yield(item) => return Some((Ok(item), Some(s))),
                Step::Fail(error) => return Some((Err(error), None)),
                Step::End => return None,
                Step::More => {}
            }
            match s.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        s.buffer.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Some((Err(body_error(e)), None)),
                None => s.done = true,
            }
        }
    })
    .boxed()
}

struct Split {
    body: Body,
    buffer: BytesMut,
    /// The body has ended: `buffer` is all that is left.
    done: bool,
    mode: Mode,
}

enum Mode {
    /// Nothing but blank space seen yet.
    Undecided,
    /// NDJSON; the number of the line at the start of `buffer`.
    Lines(usize),
    Array(ArrayScan),
}

enum Step {
    Yield((Place, Bytes)),
    Fail(Error),
    End,
    /// Read more of the body first.
    More,
}

impl Split {
    /// What the buffered bytes give, without reading more.
    fn next(&mut self) -> Step {
        loop {
            match &mut self.mode {
                Mode::Undecided => {
                    match self.buffer.iter().position(|b| !b.is_ascii_whitespace()) {
                        Some(i) if self.buffer[i] == b'[' => {
                            self.buffer.advance(i + 1);
                            self.mode = Mode::Array(ArrayScan::default());
                        }
                        Some(_) => self.mode = Mode::Lines(1),
                        None if self.done => return Step::End,
                        None => return Step::More,
                    }
                }
                Mode::Lines(line_no) => {
                    if let Some(pos) = self.buffer.iter().position(|&b| b == b'\n') {
                        let line = trim(self.buffer.split_to(pos + 1).freeze());
                        let at = *line_no;
                        *line_no += 1;
                        if line.is_empty() {
                            continue;
                        }
                        return Step::Yield((Place::Line(at), line));
                    }
                    if !self.done {
                        return Step::More;
                    }
                    let rest = trim(self.buffer.split().freeze());
                    return if rest.is_empty() {
                        Step::End
                    } else {
                        Step::Yield((Place::Line(*line_no), rest))
                    };
                }
                Mode::Array(scan) => {
                    return match scan.next(&mut self.buffer, self.done) {
                        Scanned::Element(text) => Step::Yield((Place::Element(scan.count), text)),
                        Scanned::More => Step::More,
                        Scanned::End => Step::End,
                        Scanned::Bad(reason) => Step::Fail(Error::invalid(
                            "",
                            format!(
                                "{}: malformed JSON array: {reason}",
                                Place::Element(scan.count + 1)
                            ),
                        )),
                    }
                }
            }
        }
    }
}

/// The state of splitting a JSON array's elements, the opening `[` already taken.
#[derive(Default)]
struct ArrayScan {
    /// How far into the buffer has been scanned.
    pos: usize,
    /// Where the current element starts in the buffer.
    start: Option<usize>,
    /// Nesting depth inside the current element.
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// Elements handed on so far.
    count: usize,
    /// The last separator was a `,`, so an element must follow.
    after_comma: bool,
    /// The closing `]` has been seen.
    closed: bool,
}

enum Scanned {
    Element(Bytes),
    More,
    End,
    Bad(&'static str),
}

impl ArrayScan {
    fn next(&mut self, buffer: &mut BytesMut, done: bool) -> Scanned {
        while self.pos < buffer.len() {
            let at = self.pos;
            let b = buffer[at];
            self.pos += 1;
            if self.closed {
                if b.is_ascii_whitespace() {
                    continue;
                }
                return Scanned::Bad("unexpected characters after the closing ']'");
            }
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => {}
                b',' | b']' if self.depth == 0 => {
                    let Some(start) = self.start.take() else {
                        if b == b']' && self.count == 0 && !self.after_comma {
                            self.closed = true;
                            continue;
                        }
                        return Scanned::Bad(if b == b',' {
                            "an element is missing before ','"
                        } else {
                            "an element is missing after ',' (trailing comma)"
                        });
                    };
                    let taken = buffer.split_to(self.pos).freeze();
                    self.pos = 0;
                    self.count += 1;
                    self.after_comma = b == b',';
                    self.closed = b == b']';
                    return Scanned::Element(trim(taken.slice(start..at)));
                }
                b'{' | b'[' => {
                    self.start.get_or_insert(at);
                    self.depth += 1;
                }
                b'}' | b']' => {
                    if self.depth == 0 {
                        return Scanned::Bad("unbalanced '}'");
                    }
                    self.depth -= 1;
                }
                b'"' => {
                    self.start.get_or_insert(at);
                    self.in_string = true;
                }
                _ => {
                    self.start.get_or_insert(at);
                }
            }
        }
        if self.start.is_none() {
            // Only blank space (or what came after the `]`) is buffered: nothing to keep.
            buffer.clear();
            self.pos = 0;
        }
        match (self.closed, done) {
            (true, true) => Scanned::End,
            (false, true) => Scanned::Bad("the body ends before the array's closing ']'"),
            (_, false) => Scanned::More,
        }
    }
}

fn trim(text: Bytes) -> Bytes {
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    let end = text
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    text.slice(start..end.max(start))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::request::body_from;

    /// The body sent in the given chunks.
    fn chunked(chunks: &[&str]) -> Body {
        let frames: Vec<Result<http_body::Frame<Bytes>, std::convert::Infallible>> = chunks
            .iter()
            .map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c.as_bytes()))))
            .collect();
        body_from(http_body_util::StreamBody::new(stream::iter(frames)))
    }

    /// What the body splits into: `Ok((place, text))`s, then `Err(message)` if it fails.
    async fn split(chunks: &[&str]) -> Vec<Result<(Place, String), String>> {
        messages(chunked(chunks))
            .map(|item| {
                item.map(|(place, text)| (place, String::from_utf8(text.to_vec()).unwrap()))
                    .map_err(|e| e.to_string())
            })
            .collect()
            .await
    }

    fn ok(place: Place, text: &str) -> Result<(Place, String), String> {
        Ok((place, text.to_owned()))
    }

    #[tokio::test]
    async fn ndjson_lines_keep_their_numbers() {
        use Place::Line;
        let got = split(&["{\"a\":1}\n\n  {\"b\"", ":2}\r\n", "{\"c\":3}"]).await;
        assert_eq!(
            got,
            [
                ok(Line(1), "{\"a\":1}"),
                ok(Line(3), "{\"b\":2}"),
                ok(Line(4), "{\"c\":3}")
            ]
        );
        assert_eq!(split(&["", "  \n\n"]).await, []);
        assert_eq!(split(&[]).await, []);
    }

    #[tokio::test]
    async fn array_elements_are_split_across_chunks() {
        use Place::Element;
        let got = split(&[
            " \n[ {\"a\": \"x,]}\\\"\"}",
            " ,\n{\"b\": [1, {\"c\": 2}]},",
            "{\"d\"",
            ": {}}  ] \n",
        ])
        .await;
        assert_eq!(
            got,
            [
                ok(Element(1), "{\"a\": \"x,]}\\\"\"}"),
                ok(Element(2), "{\"b\": [1, {\"c\": 2}]}"),
                ok(Element(3), "{\"d\": {}}"),
            ]
        );
        assert_eq!(split(&["[]"]).await, []);
        assert_eq!(split(&["[", " ", "]"]).await, []);
        // Scalars are split too; parsing them as messages is what fails.
        assert_eq!(
            split(&["[1, \"s\"]"]).await,
            [ok(Element(1), "1"), ok(Element(2), "\"s\"")]
        );
    }

    #[tokio::test]
    async fn malformed_arrays_fail_after_the_good_elements() {
        use Place::Element;
        let bad = |n: usize, reason: &str| -> Result<(Place, String), String> {
            Err(format!("array element {n}: malformed JSON array: {reason}"))
        };
        assert_eq!(
            split(&["[{\"a\":1},", "{\"b\":2}"]).await,
            [
                ok(Element(1), "{\"a\":1}"),
                bad(2, "the body ends before the array's closing ']'")
            ]
        );
        assert_eq!(
            split(&["[{\"a\":1},]"]).await,
            [
                ok(Element(1), "{\"a\":1}"),
                bad(2, "an element is missing after ',' (trailing comma)")
            ]
        );
        assert_eq!(
            split(&["[,{}]"]).await,
            [bad(1, "an element is missing before ','")]
        );
        assert_eq!(
            split(&["[{}] x"]).await,
            [
                ok(Element(1), "{}"),
                bad(2, "unexpected characters after the closing ']'")
            ]
        );
        assert_eq!(split(&["[}]"]).await, [bad(1, "unbalanced '}'")]);
        assert_eq!(
            split(&["[{\"a\": \"unterminated}]"]).await,
            [bad(1, "the body ends before the array's closing ']'")]
        );
    }
}
