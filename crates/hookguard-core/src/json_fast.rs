//! `serde_json::from_slice` for the schemes' probes: the same answers, fewer cycles.
//!
//! A probe reads two or three top-level fields of a body made mostly of other members, yet it
//! must validate all of them (a body that is not JSON is refused). Here a scanner of our own
//! validates the body — long strings 64 bytes a step in a loop the compiler vectorises, short
//! ones a word a step — and only the values the probe reads go through serde_json. On 4 KiB
//! bodies (`breakdown/describe_4096*` in the `verify` bench) the probe takes about half the
//! time when the body is one long string, and 26–47 % less for a dense event. The answers are
//! serde_json's by construction:
//!
//! - The fast path is taken only for a top-level object read as a struct, with keys that are
//!   plain UTF-8 (no escapes), nesting at most [`MAX_DEPTH`] deep, and only where the scanner
//!   accepts the input. The scanner accepts a subset of what serde_json accepts (its rules for
//!   whitespace, literals, numbers, strings and escapes are serde_json's `ignore_value`).
//! - Every value the struct reads is parsed by serde_json from its own bytes; an ignored value
//!   is answered as serde_json answers it (`visit_unit`, after validation).
//! - Anything else, and every error, is parsed again by `serde_json::from_slice` from the
//!   start: an error, or the answer for unusual input, is always serde_json's own. So is the
//!   answer for a visitor that asks out of turn (a key twice, a key after the end) and for a
//!   field type that swallows an error of its value (serde_json's cursor would then be left
//!   inside the value).
//!
//! A property test and the `json_fast` fuzz target compare both on arbitrary input.

use std::cell::Cell;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// Deeper nesting is left to serde_json (which allows 128 levels in a typed value and any
/// depth in an ignored one): a value the fast path hands to serde_json is never near a limit.
pub(crate) const MAX_DEPTH: u32 = 64;

type Error = serde_json::Error;

/// A JSON text without a leading UTF-8 byte order mark. RFC 8259 (8.1) forbids senders to
/// add one and lets readers ignore it; serde_json refuses it, which made a genuine delivery
/// from a sender whose stack writes one `400 invalid_payload` — permanent for most senders,
/// and a failed try toward HCSS's stopping the subscription. Every JSON read of a body goes
/// through this; the body itself (signed, stored, handed to the handler) keeps its bytes.
pub(crate) fn without_bom(body: &[u8]) -> &[u8] {
    body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body)
}

/// `serde_json::from_slice(body)`, faster for a struct read from a JSON object (a leading byte
/// order mark ignored: [`without_bom`]).
pub(crate) fn from_slice<'a, T: Deserialize<'a>>(body: &'a [u8]) -> serde_json::Result<T> {
    let body = without_bom(body);
    match fast(body) {
        Some(v) => Ok(v),
        None => serde_json::from_slice(body),
    }
}

/// The fast path alone: `None` when it defers to serde_json (unusual input or any error).
pub(crate) fn fast<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Option<T> {
    let deferred = Cell::new(false);
    let value = T::deserialize(Top {
        body,
        deferred: &deferred,
    })
    .ok()?;
    // A visitor that swallowed an error must not hide a deferral.
    (!deferred.get()).then_some(value)
}

/// Marks the parse as deferred to serde_json; the error only unwinds the visitor.
fn defer(deferred: &Cell<bool>) -> Error {
    deferred.set(true);
    de::Error::custom("deferred to serde_json")
}

/// A cursor over the body, with serde_json's rules for skipping values.
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// After an opening quote: skips to after the closing one. `Some(escaped)` when valid by
    /// serde_json's `ignore_str` (control characters refused, escapes checked, bytes above
    /// 0x7F not checked), `None` otherwise.
    #[inline(always)]
    fn string(&mut self) -> Option<bool> {
        let b = self.b;
        let mut i = self.i;
        let mut escaped = false;
        loop {
            i = plain_run(b, i);
            match *b.get(i)? {
                b'"' => {
                    self.i = i + 1;
                    return Some(escaped);
                }
                b'\\' => {
                    escaped = true;
                    match *b.get(i + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                        b'u' if b.get(i + 2..i + 6)?.iter().all(u8::is_ascii_hexdigit) => i += 6,
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, as serde_json's `ignore_integer`.
    fn number(&mut self) -> Option<()> {
        let b = self.b;
        let mut i = self.i;
        let digits = |mut i: usize| {
            while let Some(b'0'..=b'9') = b.get(i) {
                i += 1;
            }
            i
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match *b.get(i)? {
            b'0' => {
                i += 1;
                if let Some(b'0'..=b'9') = b.get(i) {
                    return None;
                }
            }
            b'1'..=b'9' => i = digits(i + 1),
            _ => return None,
        }
        if b.get(i) == Some(&b'.') {
            let end = digits(i + 1);
            if end == i + 1 {
                return None;
            }
            i = end;
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            let end = digits(i);
            if end == i {
                return None;
            }
            i = end;
        }
        self.i = i;
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + word.len())? != word {
            return None;
        }
        self.i += word.len();
        Some(())
    }

    /// A key of a nested object and its colon, whitespace before each.
    #[inline(always)]
    fn key(&mut self) -> Option<()> {
        self.ws();
        if self.peek()? != b'"' {
            return None;
        }
        self.i += 1;
        self.string()?;
        self.ws();
        if self.peek()? != b':' {
            return None;
        }
        self.i += 1;
        Some(())
    }

    /// Skips one value (whitespace before it included), as serde_json's `ignore_value`
    /// accepts it; `None` for what it refuses and for nesting beyond [`MAX_DEPTH`].
    fn value(&mut self) -> Option<()> {
        // Bit k of `objects`: whether the container at depth k+1 is an object.
        let mut objects: u64 = 0;
        let mut depth: u32 = 0;
        loop {
            self.ws();
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    self.string()?;
                }
                open @ (b'{' | b'[') => {
                    if depth == MAX_DEPTH {
                        return None;
                    }
                    self.i += 1;
                    let object = open == b'{';
                    objects = (objects << 1) | u64::from(object);
                    depth += 1;
                    self.ws();
                    if self.peek()? != if object { b'}' } else { b']' } {
                        if object {
                            self.key()?;
                        }
                        continue;
                    }
                    // Empty: closed below like any other container.
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                b'-' | b'0'..=b'9' => self.number()?,
                _ => return None,
            }
            // After a value (or an empty container's opening): a comma, or closings.
            loop {
                if depth == 0 {
                    return Some(());
                }
                self.ws();
                let object = objects & 1 == 1;
                match self.peek()? {
                    b',' => {
                        self.i += 1;
                        if object {
                            self.key()?;
                        }
                        break;
                    }
                    b'}' if object => {}
                    b']' if !object => {}
                    _ => return None,
                }
                self.i += 1;
                objects >>= 1;
                depth -= 1;
            }
        }
    }
}

/// Whether a byte ends a run of plain string bytes: a quote, a backslash or a control character.
#[inline(always)]
fn special(c: u8) -> bool {
    // Flipping bit 1 maps the control bytes onto themselves and the quote (0x22) onto 0x20, and
    // every other byte above 0x20: two comparisons instead of three (checked on all 256 bytes).
    ((c ^ 0x02) <= 0x20) | (c == b'\\')
}

const ONES: u64 = u64::MAX / 255;
const HIGHS: u64 = ONES << 7;

/// The 8 bytes at `i` as a mask whose lowest set bit (if any) is the high bit of the first
/// special byte (Mycroft's zero-byte test: a borrow only ever flags bytes above a true hit).
#[inline(always)]
fn word_mask(b: &[u8], i: usize) -> Option<u64> {
    let w = u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?);
    // Bytes of `x` below `n` (n ≤ 0x80); see [`special`] for the flip of bit 1.
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x;
    let flipped = w ^ (ONES * 0x02);
    Some((below(flipped, 0x21) | below(w ^ (ONES * u64::from(b'\\')), 1)) & HIGHS)
}

/// The index of the first special byte at or after `i` (`b.len()` when none). Most strings
/// (keys, enum values, ids) end within two words: those tests are inlined into the scan.
#[inline(always)]
fn plain_run(b: &[u8], i: usize) -> usize {
    word_stop(b, i)
        .or_else(|| word_stop(b, i + 8))
        .unwrap_or_else(|| long_run(b, i + 16))
}

/// The first special byte in the word at `i` (or, with less than a word left, in the rest),
/// or `None` when the word at `i` is plain.
#[inline(always)]
fn word_stop(b: &[u8], i: usize) -> Option<usize> {
    match word_mask(b, i) {
        Some(0) => None,
        Some(m) => Some(i + (m.trailing_zeros() / 8) as usize),
        None => Some(tail(b, i)),
    }
}

/// [`plain_run`] past the first two words: one more word, then 64 bytes a step in a fold without
/// early exit that compiles to a few vector instructions per block, then words again to find
/// the byte.
#[inline(never)]
fn long_run(b: &[u8], mut i: usize) -> usize {
    if let Some(stop) = word_stop(b, i) {
        return stop;
    }
    i += 8;
    while let Some(block) = b.get(i..i + 64) {
        if block.iter().fold(false, |acc, &c| acc | special(c)) {
            break;
        }
        i += 64;
    }
    loop {
        if let Some(stop) = word_stop(b, i) {
            return stop;
        }
        i += 8;
    }
}

/// The last bytes, fewer than a word, one at a time.
#[cold]
fn tail(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|&c| !special(c)) {
        i += 1;
    }
    i
}

/// The whole body: only a struct read from an object takes the fast path.
struct Top<'a, 'd> {
    body: &'a [u8],
    deferred: &'d Cell<bool>,
}

impl<'de> Deserializer<'de> for Top<'de, '_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
        Err(defer(self.deferred))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let mut scan = Scan { b: self.body, i: 0 };
        scan.ws();
        if scan.peek() != Some(b'{') {
            return Err(defer(self.deferred));
        }
        scan.i += 1;
        let mut members = Members {
            scan,
            state: State::First,
            deferred: self.deferred,
        };
        let value = visitor.visit_map(&mut members)?;
        // serde_json then wants the closing brace and nothing but whitespace after it; a
        // visitor that stopped early is left to serde_json too.
        let mut scan = members.scan;
        scan.ws();
        if members.state != State::Done || scan.i != self.body.len() {
            return Err(defer(self.deferred));
        }
        Ok(value)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// The top-level object's members, scanned as the visitor asks for them.
struct Members<'a, 'd> {
    scan: Scan<'a>,
    state: State,
    deferred: &'d Cell<bool>,
}

/// Where the visitor is in the object. A visitor that asks out of turn (a key twice, a value
/// without a key, a key after the end) is left to serde_json.
#[derive(Clone, Copy, PartialEq)]
enum State {
    /// Before the first key.
    First,
    /// A key was read; its value comes next.
    Value,
    /// A value was read; a comma or the closing brace comes next.
    Next,
    /// The closing brace was read.
    Done,
}

impl<'de> MapAccess<'de> for Members<'de, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        let s = &mut self.scan;
        s.ws();
        match (self.state, s.peek()) {
            (State::First | State::Next, Some(b'}')) => {
                s.i += 1;
                self.state = State::Done;
                return Ok(None);
            }
            (State::First, Some(b'"')) => {}
            (State::Next, Some(b',')) => {
                s.i += 1;
                s.ws();
                if s.peek() != Some(b'"') {
                    return Err(defer(self.deferred));
                }
            }
            _ => return Err(defer(self.deferred)),
        }
        s.i += 1;
        let start = s.i;
        let key = match s.string() {
            Some(false) => std::str::from_utf8(&s.b[start..s.i - 1]).ok(),
            _ => None,
        };
        s.ws();
        let Some(key) = key.filter(|_| s.peek() == Some(b':')) else {
            return Err(defer(self.deferred));
        };
        s.i += 1;
        self.state = State::Value;
        seed.deserialize(Key {
            key,
            deferred: self.deferred,
        })
        .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let s = &mut self.scan;
        s.ws();
        let start = s.i;
        if self.state != State::Value || s.value().is_none() {
            return Err(defer(self.deferred));
        }
        self.state = State::Next;
        seed.deserialize(Value {
            span: &s.b[start..s.i],
            deferred: self.deferred,
        })
    }
}

/// A top-level key without escapes: what serde_json's map key gives a struct's field visitor.
struct Key<'a, 'd> {
    key: &'a str,
    deferred: &'d Cell<bool>,
}

impl<'de> Deserializer<'de> for Key<'de, '_> {
    type Error = Error;

    /// A struct's field names ask for an identifier; anything else (serde_json reads numbers
    /// and booleans inside keys) is left to serde_json.
    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
        Err(defer(self.deferred))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_borrowed_str(self.key)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_borrowed_str(self.key)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_borrowed_str(self.key)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum ignored_any
    }
}

/// One valid JSON value: ignored at once, or parsed by serde_json from its own bytes. An error
/// there defers the whole body too: a field type that swallowed it (a default on error) must
/// not make the fast path answer where serde_json, its cursor left inside the value, would not.
struct Value<'a, 'd> {
    span: &'a [u8],
    deferred: &'d Cell<bool>,
}

/// Methods that parse the value's span with serde_json (`name = method()` names the function
/// that does it for `method`).
macro_rules! via_serde_json {
    ($($name:ident = $method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $name<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Error> {
            let mut de = serde_json::Deserializer::from_slice(self.span);
            let value = (&mut de).$method($($arg,)* visitor).and_then(|v| de.end().map(|()| v));
            if value.is_err() {
                self.deferred.set(true);
            }
            value
        }
    )*};
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        via_serde_json! { $($method = $method($($arg: $ty),*);)* }
    };
}

impl<'de> Value<'de, '_> {
    /// The text of a string value without escapes, which serde_json lends to a visitor as it
    /// stands (`visit_borrowed_str`); `None` for any other value. The scanner has validated the
    /// span: between its quotes there is no quote and no control byte.
    fn plain_str(&self) -> Option<&'de str> {
        let inner = self.span.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
        if inner.contains(&b'\\') {
            return None;
        }
        std::str::from_utf8(inner).ok()
    }

    /// A plain string lent to the visitor as serde_json would; anything else parsed by it.
    fn str_or<V: Visitor<'de>>(
        self,
        visitor: V,
        other: impl FnOnce(Self, V) -> Result<V::Value, Error>,
    ) -> Result<V::Value, Error> {
        match self.plain_str() {
            Some(s) => {
                let value = visitor.visit_borrowed_str(s);
                if value.is_err() {
                    // The visitor's own error (a type it does not take) is serde_json's to word.
                    self.deferred.set(true);
                }
                value
            }
            None => other(self, visitor),
        }
    }

    via_serde_json! {
        any_via_serde_json = deserialize_any(); str_via_serde_json = deserialize_str();
        option_via_serde_json = deserialize_option();
    }
}

impl<'de> Deserializer<'de> for Value<'de, '_> {
    type Error = Error;

    /// What serde_json does once it has skipped the value (here already validated).
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    // Ids and types are mostly plain strings: those are lent without a serde_json parser
    // (serde_json's `deserialize_string` and `deserialize_identifier` are its `deserialize_str`).
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.str_or(visitor, Self::any_via_serde_json)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.str_or(visitor, Self::str_via_serde_json)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.str_or(visitor, Self::str_via_serde_json)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.str_or(visitor, Self::str_via_serde_json)
    }

    /// serde_json: `null` is `visit_none`, any other value `visit_some` of the same cursor.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.span.first() == Some(&b'"') {
            visitor.visit_some(self)
        } else {
            self.option_via_serde_json(visitor)
        }
    }

    via_serde_json! {
        deserialize_bool(); deserialize_i8(); deserialize_i16(); deserialize_i32();
        deserialize_i64(); deserialize_i128(); deserialize_u8(); deserialize_u16(); deserialize_u32();
        deserialize_u64(); deserialize_u128(); deserialize_f32(); deserialize_f64(); deserialize_char();
        deserialize_bytes(); deserialize_byte_buf();
        deserialize_unit(); deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str); deserialize_seq();
        deserialize_tuple(len: usize); deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map(); deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
    }
}

/// The comparison the property test and the `json_fast` fuzz target run: for a few struct
/// shapes a probe reads with, [`from_slice`] answers as `serde_json::from_slice` does, and a
/// body serde_json reads takes the fast path unless it is unusual (so the comparison cannot
/// pass by always deferring).
#[cfg(any(test, feature = "testing"))]
pub(crate) mod check {
    use std::fmt::Debug;

    use serde::Deserialize;

    use crate::json_struct::json_struct;
    use crate::schemes::{LenientId, LenientObj, LenientStr, OptId};

    #[derive(Debug, PartialEq)]
    struct Ids {
        id: Option<String>,
        kind: Option<String>,
    }

    json_struct! {
        Deserialize for Ids {
            id: "id" (default, with OptId),
            kind: "type" (default),
        }
    }

    /// The lenient field types of the Procore, BuildWorkPro and Stripe probes.
    #[derive(Debug, PartialEq)]
    struct Lenient {
        id: Option<String>,
        ulid: Option<String>,
        kind: Option<String>,
        metadata: Option<Meta>,
    }

    json_struct! {
        Deserialize for Lenient {
            id: "id" (default, with LenientId),
            ulid: "ulid" (default, with LenientStr),
            kind: "type" (default, with LenientStr),
            metadata: "metadata" (default, with LenientObj<Meta>),
        }
    }

    #[derive(Debug, PartialEq)]
    struct Meta {
        app: Option<String>,
    }

    json_struct! {
        Deserialize for Meta {
            app: "source_application_id" (default, with LenientId),
        }
    }

    #[derive(Debug, PartialEq)]
    struct Mixed {
        n: Option<u64>,
        data: Option<serde_json::Value>,
        tags: Option<Vec<String>>,
        raw: Option<Raw>,
        date: String,
    }

    json_struct! {
        Deserialize for Mixed {
            n: "n" (default),
            data: "data" (default),
            tags: "tags" (default),
            raw: "raw" (default),
            date: "date",
        }
    }

    /// A `RawValue` (serde_json's `raw_value` feature reads it through a newtype struct).
    #[derive(Debug)]
    struct Raw(Box<serde_json::value::RawValue>);

    impl PartialEq for Raw {
        fn eq(&self, other: &Self) -> bool {
            self.0.get() == other.0.get()
        }
    }

    impl<'de> Deserialize<'de> for Raw {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            Box::deserialize(d).map(Raw)
        }
    }

    /// `Err` names the first disagreement.
    pub(crate) fn agrees(body: &[u8]) -> Result<(), String> {
        one::<Ids>(body)?;
        one::<Lenient>(body)?;
        one::<Mixed>(body)
    }

    fn one<'a, T: Deserialize<'a> + PartialEq + Debug>(body: &'a [u8]) -> Result<(), String> {
        // `from_slice` is the fast path, or serde_json itself whenever that defers: what can
        // differ is what the fast path answers.
        let theirs = serde_json::from_slice::<T>(body);
        match (super::fast::<T>(body), &theirs) {
            (Some(ours), Ok(theirs)) if ours == *theirs => Ok(()),
            (Some(ours), _) => Err(format!("fast path {ours:?}, serde_json {theirs:?}")),
            (None, Ok(_)) if usual(body) => Err(format!("a usual body deferred to serde_json: {theirs:?}")),
            (None, _) => Ok(()),
        }
    }

    /// Whether the fast path should take this body: an object at the top, no backslash or
    /// byte above 0x7F anywhere (so no escaped or non-UTF-8 key), nesting within the limit.
    pub(super) fn usual(body: &[u8]) -> bool {
        if body.trim_ascii_start().first() != Some(&b'{') || body.iter().any(|&c| c == b'\\' || c >= 0x80) {
            return false;
        }
        // Without backslashes every quote opens or closes a string.
        let (mut depth, mut deepest, mut in_string) = (0u32, 0u32, false);
        for &c in body {
            match c {
                b'"' => in_string = !in_string,
                b'{' | b'[' if !in_string => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                b'}' | b']' if !in_string => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        // The top-level object, then values nested at most `MAX_DEPTH` deep.
        deepest <= super::MAX_DEPTH + 1
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::check::agrees;

    /// What ends a run of plain string bytes, by its definition.
    fn ends_run(c: u8) -> bool {
        c == b'"' || c == b'\\' || c < 0x20
    }

    #[test]
    fn special_bytes_are_the_quote_the_backslash_and_controls() {
        for c in 0..=255u8 {
            assert_eq!(super::special(c), ends_run(c), "{c:#04x}");
        }
    }

    proptest! {
        /// The word-at-a-time and block scans find the first byte that ends a run, whatever
        /// the bytes before and after it (borrows in the word test must not flag a byte early).
        #[test]
        fn runs_end_at_the_first_special_byte(
            b in proptest::collection::vec(prop_oneof![any::<u8>(), Just(b'a'), Just(0x20u8), Just(0x21u8), Just(0x23u8), Just(0x5du8)], 0..200),
            from in 0usize..200,
        ) {
            let from = from.min(b.len());
            let want = b[from..].iter().position(|&c| ends_run(c)).map_or(b.len(), |p| from + p);
            prop_assert_eq!(super::plain_run(&b, from), want);
            prop_assert_eq!(super::long_run(&b, from), want);
        }
    }

    fn both(body: &[u8]) {
        if let Err(e) = agrees(body) {
            panic!("{:?}: {e}", String::from_utf8_lossy(body));
        }
    }

    /// The probes' lenient fields (any JSON value: read or skipped) answer as serde_json does,
    /// on the bodies a tryout sent (each was a `500` before the probes were lenient).
    #[test]
    fn lenient_fields_agree_with_serde_json() {
        for body in [
            r#"{"id":5982324300946918154,"ulid":12345,"type":"create"}"#,
            r#"{"id":1.0,"ulid":"01H","type":{"a":[1,{"b":null}]},"metadata":"x"}"#,
            r#"{"id":true,"ulid":[1,2],"type":5,"metadata":{"source_application_id":[1],"z":{}}}"#,
            r#"{"metadata":{"source_application_id":"app"},"metadata_x":1,"type":null}"#,
            r#"{"metadata":[1],"ulid":{"k":"v"},"id":-7}"#,
        ] {
            both(body.as_bytes());
            assert!(super::check::usual(body.as_bytes()), "{body}");
        }
    }

    #[test]
    fn usual_bodies_take_the_fast_path() {
        #[derive(Debug, PartialEq)]
        struct P {
            id: Option<String>,
            kind: Option<String>,
        }
        crate::json_struct::json_struct! {
            Deserialize for P { id: "id" (default, with crate::schemes::OptId), kind: "type" (default) }
        }
        let body = br#" {"created_at":"2026-11-25T10:00:00Z","data":{"a":[1,-2.5e-3,0,true,false,null,"s\"q\u00e9\/"],"b":{}},"id":5982324300946918154,"type":"bid.accepted","x":[]} "#;
        let p = super::fast::<P>(body).expect("fast path");
        assert_eq!(
            p,
            P {
                id: Some("5982324300946918154".into()),
                kind: Some("bid.accepted".into())
            }
        );
        // A long string, as in the benches' bodies, across every block alignment.
        for pad in 0..40 {
            let body = format!(
                r#"{{"id":"evt_1","{}":"{}","type":"t"}}"#,
                "k".repeat(pad),
                "é".repeat(2000 + pad)
            );
            assert!(super::fast::<P>(body.as_bytes()).is_some(), "{pad}");
            both(body.as_bytes());
        }
    }

    #[test]
    fn nesting_deeper_than_the_limit_defers() {
        let nested = |levels: usize| format!(r#"{{"date":"d","x":{}1{}}}"#, "[".repeat(levels), "]".repeat(levels));
        let at_limit = nested(super::MAX_DEPTH as usize);
        let beyond = nested(super::MAX_DEPTH as usize + 1);
        assert!(super::check::usual(at_limit.as_bytes()));
        assert!(!super::check::usual(beyond.as_bytes()));
        assert!(
            super::fast::<serde_json::Map<String, Value>>(b"{}").is_none(),
            "a map is not a struct"
        );
        #[derive(Debug)]
        struct D {
            _n: Option<u64>,
        }
        crate::json_struct::json_struct! { Deserialize for D { _n: "n" (default) } }
        assert!(super::fast::<D>(at_limit.as_bytes()).is_some());
        assert!(super::fast::<D>(beyond.as_bytes()).is_none());
        both(at_limit.as_bytes());
        both(beyond.as_bytes());
    }

    /// A visitor that asks out of turn, or a field type that swallows an error, gets
    /// serde_json's answer, never the fast path's.
    #[test]
    fn misbehaving_visitors_defer() {
        use serde::de::{Deserializer, MapAccess, Visitor};
        use serde::Deserialize;
        use std::fmt;

        /// Reads the map as `steps` says: `k` a key, `v` a value (ignored or a lenient u64).
        struct Steps(&'static str);
        impl<'de> Visitor<'de> for Steps {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
                for step in self.0.chars() {
                    match step {
                        'k' => {
                            map.next_key::<String>()?;
                        }
                        'v' => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                        'n' => {
                            map.next_value::<Lenient>()?;
                        }
                        _ => unreachable!(),
                    }
                }
                Ok(())
            }
        }
        /// A u64 that turns any error into `None`.
        struct Lenient;
        impl<'de> Deserialize<'de> for Lenient {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let _ = u64::deserialize(d);
                Ok(Lenient)
            }
        }
        fn fast_with(body: &[u8], steps: &'static str) -> bool {
            let deferred = std::cell::Cell::new(false);
            let top = super::Top {
                body,
                deferred: &deferred,
            };
            top.deserialize_struct("S", &[], Steps(steps)).is_ok() && !deferred.get()
        }
        assert!(fast_with(br#"{"a":1}"#, "kvk"), "in turn");
        assert!(!fast_with(br#"{}"k":1"#, "kk"), "a key after the end");
        assert!(!fast_with(br#"{}"k":1}"#, "kkvk"), "a member after the end");
        assert!(!fast_with(br#"{"a":}"#, "kk"), "a key twice");
        assert!(!fast_with(br#"{"a":1}"#, "v"), "a value without a key");
        assert!(!fast_with(br#"{"a":1}"#, "k"), "stopped before the end");
        assert!(fast_with(br#"{"a":1}"#, "knk"), "a lenient value that parsed");
        assert!(
            !fast_with(br#"{"a":[1]}"#, "knk"),
            "a lenient value that swallowed an error"
        );
    }

    #[test]
    fn edge_cases_agree_with_serde_json() {
        let deep_ignored = format!(r#"{{"date":"d","x":{}1{}}}"#, "[".repeat(300), "]".repeat(300));
        let deep_typed = format!(r#"{{"date":"d","data":{}1{}}}"#, "[".repeat(200), "]".repeat(200));
        let cases: Vec<&[u8]> = vec![
            b"",
            b" ",
            b"{}",
            b"[]",
            b"null",
            br#"{"date":"d"}"#,
            br#"{"date":"d"} "#,
            br#"{"date":"d"} x"#,
            br#"{"date":"d"}}"#,
            br#"{"date":"d",}"#,
            br#"{"date":"d" "n":1}"#,
            br#"{"date" "d"}"#,
            br#"{"date":"d","date":"e"}"#,
            br#"{"id":"a","id":"b","date":"d"}"#,
            br#"{"\u0069d":"x","date":"d"}"#,
            br#"{"id":"x","type":"\ud800","date":"d"}"#,
            br#"{"x":"\ud800","date":"d"}"#,
            br#"{"x":"\uD8","date":"d"}"#,
            br#"{"x":"\q","date":"d"}"#,
            b"{\"x\":\"\x01\",\"date\":\"d\"}",
            b"{\"x\":\"\x7f\",\"date\":\"d\"}",
            b"{\"x\":\"\x1f\",\"date\":\"d\"}",
            b"{\"x\":\"0123456789abcde\x1f\",\"date\":\"d\"}",
            b"{\"x\":\"\xff\xfe\",\"date\":\"d\"}",
            b"{\"\xff\":1,\"date\":\"d\"}",
            b"{\"x\xc3\xa9\":1,\"date\":\"d\"}",
            br#"{"n":-0,"date":"d"}"#,
            br#"{"n":01,"date":"d"}"#,
            br#"{"n":1.,"date":"d"}"#,
            br#"{"n":1e,"date":"d"}"#,
            br#"{"n":1e+,"date":"d"}"#,
            br#"{"n":-,"date":"d"}"#,
            br#"{"x":1.5E+10,"date":"d"}"#,
            br#"{"n":18446744073709551616,"date":"d"}"#,
            br#"{"n":1.5,"date":"d"}"#,
            br#"{"x":tru,"date":"d"}"#,
            br#"{"x":nul,"date":"d"}"#,
            br#"{"x":[1,],"date":"d"}"#,
            br#"{"x":[1 2],"date":"d"}"#,
            br#"{"x":{"a" 1},"date":"d"}"#,
            br#"{"x":{1:2},"date":"d"}"#,
            br#"{"raw": [1, {"a": 2}] ,"date":"d"}"#,
            br#"{"tags":["a","b"],"data":{"k":[null]},"date":"d"}"#,
            br#"{"tags":["a",1],"date":"d"}"#,
            br#"{"id":{"nested":1},"date":"d"}"#,
            br#"{"id":1.5,"date":"d"}"#,
            br#"{"id":-7,"type":null,"date":"d"}"#,
            br#"{"date":"d""#,
            br#"{"date":"d"#,
            b"{\"date\":\"d\"\n\t\r ,\"x\" : [ ] }",
            deep_ignored.as_bytes(),
            deep_typed.as_bytes(),
        ];
        for body in cases {
            both(body);
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("id".to_owned()),
            Just("type".to_owned()),
            Just("date".to_owned()),
            Just("n".to_owned()),
            Just("data".to_owned()),
            Just("tags".to_owned()),
            Just("raw".to_owned()),
            ".{0,6}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            ".{0,40}".prop_map(Value::from),
            "[a-z]{0,200}".prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 48, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                proptest::collection::vec((key.clone(), inner), 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    /// Bytes that matter to a JSON scanner, for mutations.
    const SPICE: &[u8] = b"\"\\{}[],:0-+.eEu \n\t\x00\x01\x1f\x20\x7f\xc3\xfftfn/";

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn arbitrary_bodies_agree_with_serde_json(
            members in proptest::collection::vec((prop_oneof![Just("id"), Just("type"), Just("date"), Just("n"), Just("x")], json_value()), 0..6),
            pretty in any::<bool>(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop::sample::select(SPICE)), 0..3),
        ) {
            let object = Value::Object(members.into_iter().map(|(k, v)| (k.to_owned(), v)).collect());
            let text = if pretty { serde_json::to_vec_pretty(&object) } else { serde_json::to_vec(&object) }.unwrap();
            prop_assert!(agrees(&text).is_ok(), "{:?}", agrees(&text));
            let mut mutated = text;
            for (at, op, byte) in edits {
                let i = at.index(mutated.len() + 1);
                match op {
                    0 => mutated.insert(i, byte),
                    1 if i < mutated.len() => { mutated.remove(i); }
                    _ if i < mutated.len() => mutated[i] = byte,
                    _ => mutated.push(byte),
                }
            }
            prop_assert!(agrees(&mutated).is_ok(), "{:?} on {:?}", agrees(&mutated), String::from_utf8_lossy(&mutated));
        }

        #[test]
        fn arbitrary_bytes_agree_with_serde_json(body in proptest::collection::vec(prop::sample::select(SPICE), 0..40)) {
            prop_assert!(agrees(&body).is_ok(), "{:?}", agrees(&body));
        }
    }
}
