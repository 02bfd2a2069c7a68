//! The renderer: one walk over the wire bytes of a message, writing its proto3 JSON into the
//! output as it goes, with the decoding rules of `DynamicMessage::decode` (prost's) and the
//! rendering rules of `json::encode_message`.
//!
//! Per message, fields are first rendered in wire order, which is field-number order for
//! everything most encoders emit. prost-generated code writes oneof members after all other
//! fields: such a late singular field is rendered at the end and rotated into place (a few
//! per message). Anything else out of number order (a field seen before, a repeated field
//! in two runs, a second member of a oneof) stops that, cheaply detected, and the message is
//! rendered again from spans collected and sorted by field number. A singular scalar
//! repeated right after itself (last one wins) is handled in place by truncating the first
//! one's output.

use prost_reflect::DynamicMessage;

use super::plan::{FieldPlan, MessagePlan, ReplyPlan, Shape, Special, Ty, I32, I64, LEN, VARINT};
use crate::transcode::json::{
    self, write_base64, write_duration, write_escaped, write_f32, write_f64, write_field_mask,
    write_i64, write_timestamp, write_u64, JsonOptions, ESCAPE,
};

/// prost's limit on nested messages (`DecodeContext`), which `DynamicMessage::decode` obeys.
pub(super) const RECURSION_LIMIT: u32 = 100;

/// Late fields rotated into place per object before rendering it again from sorted spans
/// instead: enough for the oneofs prost writes last, and it keeps a reply sent in reverse
/// order from costing time quadratic in its size.
const MAX_LATE: u32 = 8;

/// Why rendering stopped. Everything but [`Stop::Reorder`] makes the caller fall back to
/// `DynamicMessage::decode` + `json::encode_message`, which then give the exact result or error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stop {
    /// Fields out of number order, or two members of one oneof: render this message again
    /// from sorted spans. Never escapes [`Renderer::message`].
    Reorder,
    /// Bytes that `DynamicMessage::decode` rejects too.
    Malformed,
    /// A wire shape left to prost-reflect: groups, a singular message field twice (merged),
    /// a map field that is not length-delimited, a field of a pool extension.
    Unsupported,
    /// A value without a JSON form (out-of-range `Timestamp`, non-finite number in a
    /// `Value`, ...), or an `Any` that failed.
    Unrenderable,
}

/// One field's value as read from the wire, before its type is applied.
#[derive(Clone, Copy, Debug)]
pub(super) enum Payload<'b> {
    Varint(u64),
    Fixed32(u32),
    Fixed64(u64),
    Len(&'b [u8]),
}

/// A cursor over the fields of one message.
pub(super) struct Reader<'b> {
    buf: &'b [u8],
    at: usize,
}

impl<'b> Reader<'b> {
    pub(super) fn new(buf: &'b [u8]) -> Self {
        Reader { buf, at: 0 }
    }

    #[inline]
    pub(super) fn done(&self) -> bool {
        self.at >= self.buf.len()
    }

    /// A varint, accepted and rejected exactly as prost's `decode_varint` does.
    #[inline(always)]
    fn varint(&mut self) -> Result<u64, Stop> {
        match self.buf.get(self.at) {
            Some(&first) if first < 0x80 => {
                self.at += 1;
                Ok(u64::from(first))
            }
            // Two bytes: keys of fields 16 to 2047, lengths up to 16 KiB.
            Some(&first) => match self.buf.get(self.at + 1) {
                Some(&second) if second < 0x80 => {
                    self.at += 2;
                    Ok(u64::from(first & 0x7f) | u64::from(second) << 7)
                }
                _ => self.long_varint(),
            },
            None => Err(Stop::Malformed),
        }
    }

    /// A varint of two bytes or more (or none: the end of the buffer).
    #[inline(never)]
    fn long_varint(&mut self) -> Result<u64, Stop> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.at + i) else {
                return Err(Stop::Malformed);
            };
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                // The tenth byte may only carry the top bit of a u64.
                if i == 9 && byte >= 0x02 {
                    return Err(Stop::Malformed);
                }
                self.at += i + 1;
                return Ok(value);
            }
        }
        Err(Stop::Malformed)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], Stop> {
        let bytes = self
            .buf
            .get(self.at..self.at + N)
            .and_then(|b| <[u8; N]>::try_from(b).ok())
            .ok_or(Stop::Malformed)?;
        self.at += N;
        Ok(bytes)
    }

    /// One value of wire type `wire_type` (an element of a packed field).
    #[inline(always)]
    fn value(&mut self, wire_type: u8) -> Result<Payload<'b>, Stop> {
        Ok(match wire_type {
            VARINT => Payload::Varint(self.varint()?),
            I64 => Payload::Fixed64(u64::from_le_bytes(self.fixed::<8>()?)),
            I32 => Payload::Fixed32(u32::from_le_bytes(self.fixed::<4>()?)),
            LEN => {
                let len = self.varint()?;
                let rest = self.buf.len() - self.at;
                if len > rest as u64 {
                    return Err(Stop::Malformed);
                }
                let start = self.at;
                self.at += len as usize;
                Payload::Len(&self.buf[start..self.at])
            }
            // Groups (3, 4) are left to prost-reflect; 6 and 7 are not wire types.
            3 | 4 => return Err(Stop::Unsupported),
            _ => return Err(Stop::Malformed),
        })
    }

    /// The next field: its number and value.
    #[inline(always)]
    pub(super) fn field(&mut self) -> Result<(u32, Payload<'b>), Stop> {
        let key = self.varint()?;
        if key > u64::from(u32::MAX) {
            return Err(Stop::Malformed);
        }
        let number = (key as u32) >> 3;
        if number == 0 {
            return Err(Stop::Malformed);
        }
        Ok((number, self.value((key & 7) as u8)?))
    }
}

/// A decoded scalar value.
#[derive(Clone, Copy, Debug)]
enum Scalar<'b> {
    I32(i32),
    I64(i64),
    U32(u32),
    U64(u64),
    F32(f32),
    F64(f64),
    Bool(bool),
    /// A `string`, its UTF-8 not checked yet: [`write_text`] checks it as it writes it, and a
    /// value dropped unwritten (a map key sent twice, ...) goes through [`check_text`], so
    /// that bytes `DynamicMessage::decode` rejects are still rejected.
    Text(&'b [u8]),
    Bytes(&'b [u8]),
    Enum(u32, i32),
    Null(i32),
}

/// Apply `ty` to a payload with prost's conversions (`int32` from a varint truncates, ...).
/// A payload of the wrong wire type is malformed, as `check_wire_type` says.
#[inline(always)]
fn scalar(ty: Ty, payload: Payload<'_>) -> Result<Scalar<'_>, Stop> {
    use Payload::{Fixed32, Fixed64, Len, Varint};
    Ok(match (ty, payload) {
        (Ty::Int32, Varint(v)) => Scalar::I32(v as i32),
        (Ty::Int64, Varint(v)) => Scalar::I64(v as i64),
        (Ty::Uint32, Varint(v)) => Scalar::U32(v as u32),
        (Ty::Uint64, Varint(v)) => Scalar::U64(v),
        (Ty::Sint32, Varint(v)) => {
            let v = v as u32;
            Scalar::I32(((v >> 1) as i32) ^ -((v & 1) as i32))
        }
        (Ty::Sint64, Varint(v)) => Scalar::I64(((v >> 1) as i64) ^ -((v & 1) as i64)),
        (Ty::Bool, Varint(v)) => Scalar::Bool(v != 0),
        (Ty::Enum(e), Varint(v)) => Scalar::Enum(e, v as i32),
        (Ty::Null, Varint(v)) => Scalar::Null(v as i32),
        (Ty::Fixed32, Fixed32(v)) => Scalar::U32(v),
        (Ty::Sfixed32, Fixed32(v)) => Scalar::I32(v as i32),
        (Ty::Float, Fixed32(v)) => Scalar::F32(f32::from_bits(v)),
        (Ty::Fixed64, Fixed64(v)) => Scalar::U64(v),
        (Ty::Sfixed64, Fixed64(v)) => Scalar::I64(v as i64),
        (Ty::Double, Fixed64(v)) => Scalar::F64(f64::from_bits(v)),
        (Ty::String, Len(b)) => Scalar::Text(b),
        (Ty::Bytes, Len(b)) => Scalar::Bytes(b),
        (Ty::Message(_) | Ty::Group, _) => return Err(Stop::Unsupported),
        _ => return Err(Stop::Malformed),
    })
}

// ---------------------------------------------------------------------------------------------
// JSON output helpers (byte-identical to serde_json's compact output).

/// ASCII that JSON does not escape.
static PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 0x80 {
        table[i] = ESCAPE[i] == 0;
        i += 1;
    }
    table
};

/// `slot = Some(new)`, checking the UTF-8 of a string it held (see [`Scalar::Text`]).
fn replace<'b>(slot: &mut Option<Scalar<'b>>, new: Scalar<'b>) -> Result<(), Stop> {
    match slot.replace(new) {
        Some(Scalar::Text(dropped)) => check_text(dropped),
        _ => Ok(()),
    }
}

/// `bytes` must be UTF-8, as prost's decoding of a `string` requires.
fn check_text(bytes: &[u8]) -> Result<(), Stop> {
    if bytes.is_empty() || std::str::from_utf8(bytes).is_ok() {
        Ok(())
    } else {
        Err(Stop::Malformed)
    }
}

/// Append the string `bytes` as a JSON string, or [`Stop::Malformed`] if it is not UTF-8.
///
/// One pass for the usual text: ASCII without anything to escape is copied as it is, found
/// eight bytes at a time; the rest, from the first byte that is not, goes through
/// `from_utf8` and [`write_escaped`] (a plain prefix ends on a character boundary).
#[inline]
fn write_text(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), Stop> {
    let plain = plain_len(bytes);
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if plain == bytes.len() {
        out.extend_from_slice(bytes);
    } else {
        let (head, rest) = bytes.split_at(plain);
        let rest = std::str::from_utf8(rest).map_err(|_| Stop::Malformed)?;
        out.extend_from_slice(head);
        write_escaped(out, rest);
    }
    out.push(b'"');
    Ok(())
}

/// The length of the longest prefix of `bytes` in ASCII with nothing JSON escapes.
#[inline]
fn plain_len(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Whether any byte of `w` is zero (exact as a yes/no).
    let zero_byte = |w: u64| w.wrapping_sub(ONES) & !w & HIGH != 0;
    let mut n = 0;
    for chunk in bytes.chunks_exact(8) {
        let Ok(chunk) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let w = u64::from_le_bytes(chunk);
        // Non-ASCII; below 0x20 (as no byte has its top bit here); `"`; `\`.
        if w & HIGH != 0
            || w.wrapping_sub(ONES * 0x20) & !w & HIGH != 0
            || zero_byte(w ^ (ONES * u64::from(b'"')))
            || zero_byte(w ^ (ONES * u64::from(b'\\')))
        {
            break;
        }
        n += 8;
    }
    while bytes.get(n).is_some_and(|&b| PLAIN[b as usize]) {
        n += 1;
    }
    n
}

// ---------------------------------------------------------------------------------------------
// The renderer.

/// The state of one JSON object being written.
struct Obj {
    /// An entry was written: the next one needs a comma.
    comma: bool,
    /// Fields before this position have been dealt with (written, skipped or defaulted).
    next: usize,
    /// The repeated or map field being written.
    run: Option<Run>,
    /// The singular field written last, to overwrite if it comes again (last one wins).
    last: Option<Last>,
    /// Oneofs (by index) with a member dealt with; only checked on the wire-order pass.
    oneofs: u64,
    /// The fields arrive sorted and deduplicated (second pass).
    sorted: bool,
    /// Where this object's keys start in [`Renderer::keys`].
    keys: usize,
    /// Late fields rotated into place so far (see [`Renderer::late`]).
    late: u32,
}

#[derive(Clone, Copy)]
struct Run {
    pos: usize,
    /// Output length (and comma state) before the field's key.
    mark: usize,
    comma: bool,
    count: usize,
    /// `Renderer::entries` length when the run started (its map entries follow).
    entries: usize,
}

#[derive(Clone, Copy)]
struct Last {
    pos: usize,
    mark: usize,
    comma: bool,
}

impl Obj {
    fn new(sorted: bool, keys: usize) -> Self {
        Obj {
            comma: false,
            next: 0,
            run: None,
            last: None,
            oneofs: 0,
            sorted,
            keys,
            late: 0,
        }
    }
}

pub(super) struct Renderer<'a> {
    plan: &'a ReplyPlan,
    opts: &'a JsonOptions,
    out: &'a mut Vec<u8>,
    /// `(start, end of key)` in `out` of the entries of the maps being written, innermost
    /// last, to find duplicate keys.
    entries: Vec<(usize, usize)>,
    /// `(field number, start)` of the keys written in the objects being written, innermost
    /// last, each object's in number order; `start` is the output length before the key's
    /// comma. Where a late field goes (see [`Renderer::late`]).
    keys: Vec<(u32, usize)>,
}

impl<'a> Renderer<'a> {
    pub(super) fn new(plan: &'a ReplyPlan, opts: &'a JsonOptions, out: &'a mut Vec<u8>) -> Self {
        Renderer {
            plan,
            opts,
            out,
            entries: Vec::new(),
            keys: Vec::new(),
        }
    }

    /// Render message type `mi` from `buf`; `ctx` is prost's remaining recursion budget.
    pub(super) fn message(&mut self, mi: u32, buf: &[u8], ctx: u32) -> Result<(), Stop> {
        let plan = self.plan;
        let m = &plan.messages[mi as usize];
        match m.special {
            Special::None => {
                let start = self.out.len();
                let entries = self.entries.len();
                let keys = self.keys.len();
                match self.fields(m, buf, ctx, false) {
                    Err(Stop::Reorder) => {
                        self.out.truncate(start);
                        self.entries.truncate(entries);
                        self.keys.truncate(keys);
                        self.fields(m, buf, ctx, true)
                    }
                    other => other,
                }
            }
            Special::Timestamp => self.timestamp(buf),
            Special::Duration => self.duration(buf),
            Special::Wrapper(ty) => self.wrapper(ty, buf),
            Special::Empty => {
                let mut r = Reader::new(buf);
                while !r.done() {
                    r.field()?;
                }
                self.out.extend_from_slice(b"{}");
                Ok(())
            }
            Special::FieldMask => self.field_mask(buf),
            Special::Struct => self.struct_value(buf, ctx),
            Special::Value => self.value_message(buf, ctx),
            Special::ListValue => self.list_value(buf, ctx),
            Special::Any => {
                // `Any` needs the pool to resolve its type: `json` renders it.
                let any =
                    DynamicMessage::decode(m.desc.clone(), buf).map_err(|_| Stop::Malformed)?;
                json::encode_message_to(&any, self.opts, self.out).map_err(|_| Stop::Unrenderable)
            }
        }
    }

    /// A message nested in the current one (prost checks the budget, then spends one).
    #[inline]
    fn nested(&mut self, mi: u32, buf: &[u8], ctx: u32) -> Result<(), Stop> {
        if ctx == 0 {
            return Err(Stop::Malformed);
        }
        self.message(mi, buf, ctx - 1)
    }

    /// The fields of an ordinary message as an object: in wire order (`sorted == false`,
    /// may stop with [`Stop::Reorder`]), or from spans sorted by field number.
    fn fields(&mut self, m: &MessagePlan, buf: &[u8], ctx: u32, sorted: bool) -> Result<(), Stop> {
        if self.keys.capacity() == 0 {
            // One allocation for most replies rather than growing 4, 8, 16, 32.
            self.keys.reserve(32);
        }
        let mut obj = Obj::new(sorted, self.keys.len());
        if !sorted {
            self.out.push(b'{');
            let mut r = Reader::new(buf);
            while !r.done() {
                let (number, payload) = r.field()?;
                match m.position(number) {
                    Some(pos) => self.occurrence(m, &mut obj, pos, payload, ctx)?,
                    None if m.has_extensions => return Err(Stop::Unsupported),
                    None => {}
                }
            }
        } else {
            let kept = self.sorted_spans(m, buf, ctx)?;
            self.out.push(b'{');
            for (pos, payload) in kept {
                self.occurrence(m, &mut obj, pos, payload, ctx)?;
            }
        }
        if let Some(run) = obj.run {
            self.close(&m.fields[run.pos], &mut obj);
        }
        self.defaults(m, &mut obj, m.fields.len(), ctx)?;
        self.out.push(b'}');
        self.keys.truncate(obj.keys);
        Ok(())
    }

    /// The occurrences that decide the message's value, sorted by field number: all of
    /// repeated and map fields, the last of a singular field, only the last-set member of a
    /// oneof. Occurrences that lose are still checked (rendered, then dropped), because
    /// `DynamicMessage::decode` would reject them if they were malformed.
    fn sorted_spans<'b>(
        &mut self,
        m: &MessagePlan,
        buf: &'b [u8],
        ctx: u32,
    ) -> Result<Vec<(usize, Payload<'b>)>, Stop> {
        let mut all: Vec<(usize, Payload<'b>)> = Vec::new();
        let mut r = Reader::new(buf);
        while !r.done() {
            let (number, payload) = r.field()?;
            match m.position(number) {
                Some(pos) => all.push((pos, payload)),
                None if m.has_extensions => return Err(Stop::Unsupported),
                None => {}
            }
        }
        let mut last = vec![usize::MAX; m.fields.len()];
        let mut winner = vec![usize::MAX; m.oneofs];
        for (i, &(pos, _)) in all.iter().enumerate() {
            let f = &m.fields[pos];
            if matches!(f.shape, Shape::Single) {
                if last[pos] != usize::MAX && matches!(f.ty, Ty::Message(_) | Ty::Group) {
                    // Merged by protobuf rules: left to prost-reflect.
                    return Err(Stop::Unsupported);
                }
                last[pos] = i;
                if let Some(o) = f.oneof {
                    winner[o as usize] = i;
                }
            }
        }
        let mut kept = Vec::with_capacity(all.len());
        for (i, &(pos, payload)) in all.iter().enumerate() {
            let f = &m.fields[pos];
            let keep = match f.shape {
                Shape::Single => last[pos] == i && f.oneof.is_none_or(|o| winner[o as usize] == i),
                Shape::List | Shape::Map { .. } => true,
            };
            if keep {
                kept.push((pos, payload));
            } else {
                let mark = self.out.len();
                self.value(f.ty, payload, ctx)?;
                self.out.truncate(mark);
            }
        }
        kept.sort_by_key(|&(pos, _)| pos);
        Ok(kept)
    }

    /// One field occurrence, in field-number order (else [`Stop::Reorder`]).
    fn occurrence(
        &mut self,
        m: &MessagePlan,
        obj: &mut Obj,
        pos: usize,
        payload: Payload<'_>,
        ctx: u32,
    ) -> Result<(), Stop> {
        let f = &m.fields[pos];
        if let Some(run) = obj.run {
            if run.pos == pos {
                return self.item(f, obj, payload, ctx);
            }
            self.close(&m.fields[run.pos], obj);
        }
        if pos < obj.next {
            match obj.last {
                // The same singular field again: the last one wins.
                Some(last) if last.pos == pos => {
                    if matches!(f.ty, Ty::Message(_) | Ty::Group) {
                        return Err(Stop::Unsupported);
                    }
                    self.out.truncate(last.mark);
                    obj.comma = last.comma;
                    self.unwrite_keys(obj, last.mark);
                }
                _ => return self.late(f, obj, payload, ctx),
            }
        } else {
            self.defaults(m, obj, pos, ctx)?;
            if let (Some(o), false) = (f.oneof, obj.sorted) {
                if o >= 64 || obj.oneofs & (1 << o) != 0 {
                    return Err(Stop::Reorder);
                }
                obj.oneofs |= 1 << o;
            }
            obj.next = pos + 1;
        }
        match f.shape {
            Shape::Single => {
                obj.last = Some(Last {
                    pos,
                    mark: self.out.len(),
                    comma: obj.comma,
                });
                self.single(f, obj, payload, ctx)
            }
            Shape::List | Shape::Map { .. } => {
                obj.last = None;
                obj.run = Some(Run {
                    pos,
                    mark: self.out.len(),
                    comma: obj.comma,
                    count: 0,
                    entries: self.entries.len(),
                });
                self.key(f, obj);
                self.out.push(if matches!(f.shape, Shape::List) {
                    b'['
                } else {
                    b'{'
                });
                self.item(f, obj, payload, ctx)
            }
        }
    }

    /// A singular field after fields of higher numbers, as prost-generated code writes the
    /// members of a oneof (after all other fields): rendered at the end of the output, then
    /// rotated into place before the first key of a higher number, rather than rendering
    /// the whole message again from sorted spans. Anything else out of order (a field
    /// already written, a repeated field in two runs, a second member of a oneof) still
    /// stops with [`Stop::Reorder`], and so do late fields past [`MAX_LATE`], as each one
    /// moves the output after it.
    fn late(
        &mut self,
        f: &FieldPlan,
        obj: &mut Obj,
        payload: Payload<'_>,
        ctx: u32,
    ) -> Result<(), Stop> {
        if obj.sorted || !matches!(f.shape, Shape::Single) || obj.late >= MAX_LATE {
            return Err(Stop::Reorder);
        }
        let written = &self.keys[obj.keys..];
        let k = written.partition_point(|&(number, _)| number < f.number);
        let at = match written.get(k) {
            // Written already (not right before, else `obj.last` would have caught it).
            Some(&(number, _)) if number == f.number => return Err(Stop::Reorder),
            Some(&(_, at)) => at,
            // Only fields that wrote nothing (defaults) come after it: append as usual.
            None => usize::MAX,
        };
        if let Some(o) = f.oneof {
            if o >= 64 || obj.oneofs & (1 << o) != 0 {
                return Err(Stop::Reorder);
            }
            obj.oneofs |= 1 << o;
        }
        // A later repeat of this field cannot overwrite in place: it goes through here.
        obj.last = None;
        if at == usize::MAX {
            return self.single(f, obj, payload, ctx);
        }
        let tail = self.out.len();
        let comma = obj.comma;
        // Before the object's first key: `key:value,`; else `,key:value`.
        obj.comma = k > 0;
        self.single(f, obj, payload, ctx)?;
        obj.comma = comma;
        let len = self.out.len() - tail;
        if len == 0 {
            return Ok(());
        }
        if k == 0 {
            self.out.push(b',');
        }
        let len = self.out.len() - tail;
        self.out[at..].rotate_right(len);
        obj.late += 1;
        // `single` pushed this key last; it belongs at `k`, and the keys after it moved.
        self.keys.pop();
        for key in &mut self.keys[obj.keys + k..] {
            key.1 += len;
        }
        if k == 0 {
            // The former first key now has a comma before it: its start is that comma.
            self.keys[obj.keys].1 -= 1;
        }
        self.keys.insert(obj.keys + k, (f.number, at));
        Ok(())
    }

    /// Forget the keys of this object written at or after output position `mark`.
    fn unwrite_keys(&mut self, obj: &Obj, mark: usize) {
        while self.keys.len() > obj.keys && self.keys.last().is_some_and(|&(_, at)| at >= mark) {
            self.keys.pop();
        }
    }

    #[inline]
    fn key(&mut self, f: &FieldPlan, obj: &mut Obj) {
        self.keys.push((f.number, self.out.len()));
        let key = &f.keys[usize::from(self.opts.use_proto_names)];
        let key = if obj.comma { key } else { &key[1..] };
        obj.comma = true;
        self.out.extend_from_slice(key);
    }

    /// With `emit_unpopulated`, the defaults of the fields without presence before `upto`
    /// that did not appear.
    #[inline]
    fn defaults(
        &mut self,
        m: &MessagePlan,
        obj: &mut Obj,
        upto: usize,
        ctx: u32,
    ) -> Result<(), Stop> {
        if self.opts.emit_unpopulated {
            self.write_defaults(m, obj, upto, ctx)?;
        }
        obj.next = obj.next.max(upto);
        Ok(())
    }

    #[inline(never)]
    fn write_defaults(
        &mut self,
        m: &MessagePlan,
        obj: &mut Obj,
        upto: usize,
        ctx: u32,
    ) -> Result<(), Stop> {
        for f in &m.fields[obj.next.min(upto)..upto] {
            if f.presence {
                continue;
            }
            self.key(f, obj);
            match f.shape {
                Shape::Single => self.default_value(f.ty, ctx)?,
                Shape::List => self.out.extend_from_slice(b"[]"),
                Shape::Map { .. } => self.out.extend_from_slice(b"{}"),
            }
        }
        Ok(())
    }

    fn single(
        &mut self,
        f: &FieldPlan,
        obj: &mut Obj,
        payload: Payload<'_>,
        ctx: u32,
    ) -> Result<(), Stop> {
        match f.ty {
            Ty::Message(mi) => {
                let Payload::Len(bytes) = payload else {
                    return Err(Stop::Malformed);
                };
                self.key(f, obj);
                self.nested(mi, bytes, ctx)
            }
            Ty::Group => Err(Stop::Unsupported),
            ty => {
                let s = scalar(ty, payload)?;
                if !f.presence && !self.opts.emit_unpopulated && self.is_default(s) {
                    return Ok(());
                }
                self.key(f, obj);
                self.write_scalar(s)
            }
        }
    }

    /// One element of a repeated field (or several, packed), or one map entry.
    fn item(
        &mut self,
        f: &FieldPlan,
        obj: &mut Obj,
        payload: Payload<'_>,
        ctx: u32,
    ) -> Result<(), Stop> {
        let Some(run) = obj.run.as_mut() else {
            return Err(Stop::Unsupported);
        };
        match f.shape {
            Shape::List => match payload {
                Payload::Len(bytes) if f.ty.packable() => {
                    let wire_type = f.ty.wire_type();
                    let mut r = Reader::new(bytes);
                    while !r.done() {
                        let element = scalar(f.ty, r.value(wire_type)?)?;
                        if run.count > 0 {
                            self.out.push(b',');
                        }
                        run.count += 1;
                        self.write_scalar(element)?;
                    }
                    Ok(())
                }
                _ => {
                    if run.count > 0 {
                        self.out.push(b',');
                    }
                    run.count += 1;
                    self.value(f.ty, payload, ctx)
                }
            },
            Shape::Map { key, value } => {
                // prost-reflect reads any map occurrence as length-delimited, whatever its
                // wire type says: such bytes are left to it.
                let Payload::Len(entry) = payload else {
                    return Err(Stop::Unsupported);
                };
                if run.count > 0 {
                    self.out.push(b',');
                }
                run.count += 1;
                self.entry(key, value, entry, ctx)
            }
            Shape::Single => Err(Stop::Unsupported),
        }
    }

    /// End the repeated or map field being written: `]`/`}`, or nothing at all when it
    /// turned out empty (a packed field of length 0), unless defaults are wanted.
    fn close(&mut self, f: &FieldPlan, obj: &mut Obj) {
        let Some(run) = obj.run.take() else {
            return;
        };
        let is_map = matches!(f.shape, Shape::Map { .. });
        if run.count == 0 && !self.opts.emit_unpopulated {
            self.out.truncate(run.mark);
            obj.comma = run.comma;
            self.unwrite_keys(obj, run.mark);
        } else {
            if is_map {
                self.dedupe(run.entries);
            }
            self.out.push(if is_map { b'}' } else { b']' });
        }
        self.entries.truncate(run.entries);
    }

    /// A map entry `"key":value`; a missing key or value is its type's default.
    fn entry(&mut self, key_ty: Ty, value_ty: Ty, entry: &[u8], ctx: u32) -> Result<(), Stop> {
        let mut key = None;
        let mut value = None;
        let mut message = None;
        let mut r = Reader::new(entry);
        while !r.done() {
            match r.field()? {
                (1, p) => replace(&mut key, scalar(key_ty, p)?)?,
                (2, p) => match value_ty {
                    Ty::Message(_) => {
                        let Payload::Len(bytes) = p else {
                            return Err(Stop::Malformed);
                        };
                        if message.is_some() {
                            return Err(Stop::Unsupported);
                        }
                        message = Some(bytes);
                    }
                    ty => replace(&mut value, scalar(ty, p)?)?,
                },
                _ => {}
            }
        }
        let start = self.out.len();
        match key.unwrap_or_else(|| self.default_scalar(key_ty)) {
            Scalar::Text(s) => write_text(self.out, s)?,
            Scalar::I32(v) => self.quoted_int(i64::from(v)),
            Scalar::I64(v) => self.quoted_int(v),
            Scalar::U32(v) => self.quoted_uint(u64::from(v)),
            Scalar::U64(v) => self.quoted_uint(v),
            Scalar::Bool(b) => {
                self.out
                    .extend_from_slice(if b { b"\"true\"" } else { b"\"false\"" })
            }
            _ => return Err(Stop::Unsupported),
        }
        let key_end = self.out.len();
        self.out.push(b':');
        match (value_ty, message, value) {
            (Ty::Message(mi), Some(bytes), _) => self.nested(mi, bytes, ctx)?,
            (_, _, Some(s)) => self.write_scalar(s)?,
            _ => self.default_value(value_ty, ctx)?,
        }
        self.entries.push((start, key_end));
        Ok(())
    }

    fn quoted_int(&mut self, v: i64) {
        self.out.push(b'"');
        write_i64(self.out, v);
        self.out.push(b'"');
    }

    fn quoted_uint(&mut self, v: u64) {
        self.out.push(b'"');
        write_u64(self.out, v);
        self.out.push(b'"');
    }

    /// Drop all but the last of map entries with equal keys (from `base` in `entries`), as
    /// the last value wins when decoding a map.
    fn dedupe(&mut self, base: usize) {
        let entries = &self.entries[base..];
        let n = entries.len();
        if n < 2 {
            return;
        }
        let out = &*self.out;
        let key = |i: usize| &out[entries[i].0..entries[i].1];
        let duplicated = if n <= 16 {
            (0..n).any(|i| (i + 1..n).any(|j| key(i) == key(j)))
        } else {
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| key(a).cmp(key(b)));
            order.windows(2).any(|w| key(w[0]) == key(w[1]))
        };
        if !duplicated {
            return;
        }
        // Rare: rebuild the entries, keeping the last of each key.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| key(a).cmp(key(b)).then(a.cmp(&b)));
        let mut keep = vec![false; n];
        for (k, &i) in order.iter().enumerate() {
            keep[i] = order.get(k + 1).is_none_or(|&next| key(next) != key(i));
        }
        let end = |i: usize| {
            if i + 1 < n {
                entries[i + 1].0 - 1
            } else {
                out.len()
            }
        };
        let mut rebuilt = Vec::with_capacity(out.len() - entries[0].0);
        for i in (0..n).filter(|&i| keep[i]) {
            if !rebuilt.is_empty() {
                rebuilt.push(b',');
            }
            rebuilt.extend_from_slice(&out[entries[i].0..end(i)]);
        }
        let start = entries[0].0;
        self.out.truncate(start);
        self.out.extend_from_slice(&rebuilt);
    }

    /// A singular value (or one element) of type `ty`, whatever its value.
    fn value(&mut self, ty: Ty, payload: Payload<'_>, ctx: u32) -> Result<(), Stop> {
        match ty {
            Ty::Message(mi) => match payload {
                Payload::Len(bytes) => self.nested(mi, bytes, ctx),
                _ => Err(Stop::Malformed),
            },
            Ty::Group => Err(Stop::Unsupported),
            ty => {
                let s = scalar(ty, payload)?;
                self.write_scalar(s)
            }
        }
    }

    fn default_value(&mut self, ty: Ty, ctx: u32) -> Result<(), Stop> {
        match ty {
            // The default message: no decoding, so no recursion budget spent.
            Ty::Message(mi) => self.message(mi, &[], ctx),
            Ty::Group => Err(Stop::Unsupported),
            ty => {
                let s = self.default_scalar(ty);
                self.write_scalar(s)
            }
        }
    }

    fn default_scalar(&self, ty: Ty) -> Scalar<'static> {
        match ty {
            Ty::Double => Scalar::F64(0.0),
            Ty::Float => Scalar::F32(0.0),
            Ty::Int32 | Ty::Sint32 | Ty::Sfixed32 => Scalar::I32(0),
            Ty::Int64 | Ty::Sint64 | Ty::Sfixed64 => Scalar::I64(0),
            Ty::Uint32 | Ty::Fixed32 => Scalar::U32(0),
            Ty::Uint64 | Ty::Fixed64 => Scalar::U64(0),
            Ty::Bool => Scalar::Bool(false),
            Ty::String => Scalar::Text(b""),
            Ty::Bytes | Ty::Message(_) | Ty::Group => Scalar::Bytes(&[]),
            Ty::Enum(e) => Scalar::Enum(e, self.plan.enums[e as usize].default),
            Ty::Null => Scalar::Null(0),
        }
    }

    #[inline]
    fn is_default(&self, s: Scalar<'_>) -> bool {
        match s {
            Scalar::I32(v) | Scalar::Null(v) => v == 0,
            Scalar::I64(v) => v == 0,
            Scalar::U32(v) => v == 0,
            Scalar::U64(v) => v == 0,
            // By the bits, as protobuf does: -0.0 is not a default (nor is NaN).
            Scalar::F32(v) => v.to_bits() == 0,
            Scalar::F64(v) => v.to_bits() == 0,
            Scalar::Bool(v) => !v,
            Scalar::Text(v) => v.is_empty(),
            Scalar::Bytes(v) => v.is_empty(),
            Scalar::Enum(e, v) => v == self.plan.enums[e as usize].default,
        }
    }

    #[inline]
    fn write_scalar(&mut self, s: Scalar<'_>) -> Result<(), Stop> {
        match s {
            Scalar::I32(v) => write_i64(self.out, i64::from(v)),
            Scalar::U32(v) => write_u64(self.out, u64::from(v)),
            Scalar::I64(v) => self.quoted_int(v),
            Scalar::U64(v) => self.quoted_uint(v),
            Scalar::F32(v) => write_f32(self.out, v),
            Scalar::F64(v) => write_f64(self.out, v),
            Scalar::Bool(v) => self
                .out
                .extend_from_slice(if v { b"true" } else { b"false" }),
            Scalar::Text(v) => write_text(self.out, v)?,
            Scalar::Bytes(v) => write_base64(self.out, v),
            Scalar::Enum(e, v) => match self.plan.enums[e as usize].name(v) {
                Some(name) => self.out.extend_from_slice(name),
                None => write_i64(self.out, i64::from(v)),
            },
            Scalar::Null(_) => self.out.extend_from_slice(b"null"),
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Well-known types, as `json::encode_message` renders them (with its text helpers).

    /// `seconds` (1) and `nanos` (2) of a Timestamp or Duration; last one wins.
    fn seconds_nanos(buf: &[u8]) -> Result<(i64, i32), Stop> {
        let (mut seconds, mut nanos) = (0i64, 0i32);
        let mut r = Reader::new(buf);
        while !r.done() {
            match r.field()? {
                (1, Payload::Varint(v)) => seconds = v as i64,
                (2, Payload::Varint(v)) => nanos = v as i32,
                (1 | 2, _) => return Err(Stop::Malformed),
                _ => {}
            }
        }
        Ok((seconds, nanos))
    }

    fn timestamp(&mut self, buf: &[u8]) -> Result<(), Stop> {
        let (seconds, nanos) = Self::seconds_nanos(buf)?;
        write_timestamp(self.out, seconds, nanos).map_err(|_| Stop::Unrenderable)
    }

    fn duration(&mut self, buf: &[u8]) -> Result<(), Stop> {
        let (seconds, nanos) = Self::seconds_nanos(buf)?;
        write_duration(self.out, seconds, nanos).map_err(|_| Stop::Unrenderable)
    }

    fn wrapper(&mut self, ty: Ty, buf: &[u8]) -> Result<(), Stop> {
        let mut value = self.default_scalar(ty);
        let mut r = Reader::new(buf);
        while !r.done() {
            if let (1, p) = r.field()? {
                if let Scalar::Text(dropped) = std::mem::replace(&mut value, scalar(ty, p)?) {
                    check_text(dropped)?;
                }
            }
        }
        self.write_scalar(value)
    }

    /// Paths in lowerCamelCase joined by `,`; a path that would not round-trip fails.
    fn field_mask(&mut self, buf: &[u8]) -> Result<(), Stop> {
        let mut paths = Vec::new();
        let mut r = Reader::new(buf);
        while !r.done() {
            let (1, p) = r.field()? else {
                continue;
            };
            let Scalar::Text(path) = scalar(Ty::String, p)? else {
                return Err(Stop::Malformed);
            };
            paths.push(std::str::from_utf8(path).map_err(|_| Stop::Malformed)?);
        }
        write_field_mask(self.out, paths).map_err(|_| Stop::Unrenderable)
    }

    /// `Struct`: its `fields` map (1) as an object.
    fn struct_value(&mut self, buf: &[u8], ctx: u32) -> Result<(), Stop> {
        self.out.push(b'{');
        let base = self.entries.len();
        let mut count = 0;
        let mut r = Reader::new(buf);
        while !r.done() {
            let (number, payload) = r.field()?;
            if number != 1 {
                continue;
            }
            let Payload::Len(entry) = payload else {
                return Err(Stop::Unsupported);
            };
            if count > 0 {
                self.out.push(b',');
            }
            count += 1;
            let mut key: &[u8] = b"";
            let mut value = None;
            let mut er = Reader::new(entry);
            while !er.done() {
                match er.field()? {
                    (1, p) => {
                        let Scalar::Text(k) = scalar(Ty::String, p)? else {
                            return Err(Stop::Malformed);
                        };
                        check_text(std::mem::replace(&mut key, k))?;
                    }
                    (2, Payload::Len(bytes)) => {
                        if value.is_some() {
                            return Err(Stop::Unsupported);
                        }
                        value = Some(bytes);
                    }
                    (2, _) => return Err(Stop::Malformed),
                    _ => {}
                }
            }
            let start = self.out.len();
            write_text(self.out, key)?;
            let key_end = self.out.len();
            self.out.push(b':');
            match value {
                Some(bytes) => {
                    if ctx == 0 {
                        return Err(Stop::Malformed);
                    }
                    self.value_message(bytes, ctx - 1)?;
                }
                None => self.out.extend_from_slice(b"null"),
            }
            self.entries.push((start, key_end));
        }
        self.dedupe(base);
        self.entries.truncate(base);
        self.out.push(b'}');
        Ok(())
    }

    /// `Value`: its one set member (the last one seen), or `null`.
    fn value_message(&mut self, buf: &[u8], ctx: u32) -> Result<(), Stop> {
        let start = self.out.len();
        let mut previous = 0u32;
        let mut r = Reader::new(buf);
        while !r.done() {
            let (number, payload) = r.field()?;
            if !(1..=6).contains(&number) {
                continue;
            }
            // A message member right after itself would be merged: left to prost-reflect.
            if number >= 5 && previous == number {
                return Err(Stop::Unsupported);
            }
            self.out.truncate(start);
            match (number, payload) {
                (1, Payload::Varint(_)) => self.out.extend_from_slice(b"null"),
                (2, Payload::Fixed64(v)) => {
                    let v = f64::from_bits(v);
                    if !v.is_finite() {
                        return Err(Stop::Unrenderable);
                    }
                    write_f64(self.out, v);
                }
                (3, p) => {
                    let s = scalar(Ty::String, p)?;
                    self.write_scalar(s)?;
                }
                (4, Payload::Varint(v)) => self.write_scalar(Scalar::Bool(v != 0))?,
                (5 | 6, Payload::Len(bytes)) => {
                    if ctx == 0 {
                        return Err(Stop::Malformed);
                    }
                    if number == 5 {
                        self.struct_value(bytes, ctx - 1)?;
                    } else {
                        self.list_value(bytes, ctx - 1)?;
                    }
                }
                _ => return Err(Stop::Malformed),
            }
            previous = number;
        }
        if previous == 0 {
            self.out.extend_from_slice(b"null");
        }
        Ok(())
    }

    /// `ListValue`: its `values` (1) as an array.
    fn list_value(&mut self, buf: &[u8], ctx: u32) -> Result<(), Stop> {
        self.out.push(b'[');
        let mut first = true;
        let mut r = Reader::new(buf);
        while !r.done() {
            match r.field()? {
                (1, Payload::Len(bytes)) => {
                    if !first {
                        self.out.push(b',');
                    }
                    first = false;
                    if ctx == 0 {
                        return Err(Stop::Malformed);
                    }
                    self.value_message(bytes, ctx - 1)?;
                }
                (1, _) => return Err(Stop::Malformed),
                _ => {}
            }
        }
        self.out.push(b']');
        Ok(())
    }
}
