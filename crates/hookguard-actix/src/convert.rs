//! Translation between actix-web's types (built on `http` 0.2) and the core's (`http` 1.x):
//! the request head in, the core's answers out, and the bounded body read.

use actix_web::dev::{Payload, RequestHead as ActixHead};
use actix_web::error::PayloadError;
use actix_web::http::{header as actix_header, StatusCode};
use actix_web::HttpResponse;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use hookguard_core::{Rejection, RequestHead};

/// The parts of an actix request the core looks at, as `http` 1.x values.
///
/// Both `http` versions accept exactly the same method tokens, request targets and header
/// bytes, so every conversion below is a re-parse of bytes actix already validated.
pub(crate) struct Head {
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
}

impl Head {
    pub(crate) fn new(head: &ActixHead) -> Result<Self, Rejection> {
        Self::with(head, None)
    }

    /// [`new`](Self::new), taking the request target and the header names from `recent` when it
    /// has seen them (and leaving this request's there).
    pub(crate) fn with(head: &ActixHead, mut recent: Option<&mut Recent>) -> Result<Self, Rejection> {
        let method =
            http::Method::from_bytes(head.method.as_str().as_bytes()).map_err(|_| Rejection::MethodNotAllowed)?;
        let uri = match recent.as_deref_mut() {
            Some(recent) => recent.uri(&head.uri)?,
            None => parse_uri(&head.uri)?,
        };
        // Every value is copied once, into one buffer the values then share (one allocation for
        // all of them).
        let mut all = BytesMut::with_capacity(head.headers.iter().map(|(_, v)| v.len()).sum());
        for (_, value) in head.headers.iter() {
            all.extend_from_slice(value.as_bytes());
        }
        let mut all = all.freeze();
        let mut headers = http::HeaderMap::with_capacity(head.headers.len());
        for (name, value) in head.headers.iter() {
            let value = all.split_to(value.len().min(all.len()));
            let name = match recent.as_deref_mut() {
                Some(recent) => recent.name(name),
                None => parse_name(name),
            };
            if let (Some(n), Ok(v)) = (name, http::HeaderValue::from_maybe_shared(value)) {
                headers.append(n, v);
            }
        }
        Ok(Self { method, uri, headers })
    }

    pub(crate) fn as_core(&self) -> RequestHead<'_> {
        RequestHead::new(&self.method, &self.uri, &self.headers)
    }

    /// The declared length, for sizing the buffer (the core already refused one over the limit).
    fn content_length(&self) -> Option<usize> {
        self.headers
            .get(http::header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse()
            .ok()
    }
}

/// How many header names [`Recent`] keeps.
const RECENT_NAMES: usize = 32;

/// The request target and header names of recent requests through one middleware, with their
/// `http` 1.x forms. A webhook route sees one target and, from one sender, the same names on
/// every delivery: those are cloned (a reference count) instead of parsed and allocated again.
/// Bounded: one target (replaced by the next that differs) and [`RECENT_NAMES`] names (replaced
/// in turn once full). No header value and no query is kept.
#[derive(Default)]
pub(crate) struct Recent {
    uri: Option<(actix_web::http::uri::PathAndQuery, http::Uri)>,
    names: Vec<(actix_header::HeaderName, http::HeaderName)>,
    /// The next name to replace once `names` is full.
    next: usize,
}

impl Recent {
    fn uri(&mut self, uri: &actix_web::http::Uri) -> Result<http::Uri, Rejection> {
        // Only origin-form targets without a query are kept (compared byte for byte): a query
        // may carry a credential (HCSS's URL token), which is not kept past its request.
        let Some(pq) = uri
            .path_and_query()
            .filter(|pq| uri.scheme().is_none() && pq.query().is_none())
        else {
            return parse_uri(uri);
        };
        if let Some((seen, ours)) = &self.uri {
            if seen.as_str() == pq.as_str() {
                return Ok(ours.clone());
            }
        }
        let ours = parse_uri(uri)?;
        self.uri = Some((pq.clone(), ours.clone()));
        Ok(ours)
    }

    /// The `http` 1.x form of `name`. (actix's header map iterates in an order of its own per
    /// map, so names are found by value, not by position.)
    fn name(&mut self, name: &actix_header::HeaderName) -> Option<http::HeaderName> {
        if let Some((_, ours)) = self.names.iter().find(|(seen, _)| seen == name) {
            return Some(ours.clone());
        }
        let ours = parse_name(name)?;
        if self.names.len() < RECENT_NAMES {
            self.names.push((name.clone(), ours.clone()));
        } else {
            self.names[self.next] = (name.clone(), ours.clone());
            self.next = (self.next + 1) % RECENT_NAMES;
        }
        Some(ours)
    }
}

fn parse_uri(uri: &actix_web::http::Uri) -> Result<http::Uri, Rejection> {
    // Server requests are origin-form (`/path?query`): re-parse just that, no `Display` round trip.
    match uri.path_and_query() {
        Some(pq) if uri.scheme().is_none() => http::Uri::try_from(pq.as_str()),
        _ => http::Uri::try_from(uri.to_string()),
    }
    .map_err(|_| Rejection::InvalidPayload("request target is not a valid URI"))
}

/// Standard names are looked up without allocating.
fn parse_name(name: &actix_header::HeaderName) -> Option<http::HeaderName> {
    http::HeaderName::from_bytes(name.as_str().as_bytes()).ok()
}

/// An answer the core built (rejection, challenge echo, duplicate, ignored) as an actix response:
/// status, every header (`Content-Type`, `nosniff`, `Retry-After`, …), the body, and the
/// [`Acknowledgement`](hookguard_core::response::Acknowledgement) extension.
pub(crate) fn response(r: &http::Response<Bytes>) -> HttpResponse {
    let status = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut res = HttpResponse::with_body(status, r.body().clone());
    let headers = res.headers_mut();
    for (name, value) in r.headers() {
        if let (Ok(n), Ok(v)) = (
            actix_header::HeaderName::from_bytes(name.as_str().as_bytes()),
            actix_header::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(n, v);
        }
    }
    // Which acknowledgement it is, for middleware outside this one (Slack's carry no body).
    if let Some(ack) = r.extensions().get::<hookguard_core::response::Acknowledgement>() {
        res.extensions_mut().insert(*ack);
    }
    res.map_into_boxed_body()
}

/// Reads the whole payload, refusing it as soon as more than `limit` bytes have arrived
/// (chunked bodies declare no length, so the bound is enforced on the stream itself).
///
/// A body that arrives in one chunk is returned as that chunk, without a copy. A body that
/// has not fully arrived within `timeout` is refused with `408 body_read_timeout`.
pub(crate) async fn read_body_within(
    payload: &mut Payload,
    head: &Head,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, Rejection> {
    // The timer is only armed when the body is not already here at the first poll.
    hookguard_core::within(read_body(payload, head, limit), || tokio::time::sleep(timeout))
        .await
        .unwrap_or(Err(Rejection::BodyReadTimeout))
}

async fn read_body(payload: &mut Payload, head: &Head, limit: usize) -> Result<Bytes, Rejection> {
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    let mut len = 0usize;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            PayloadError::Overflow => Rejection::BodyTooLarge { limit },
            // A time-out on this side is retried (408), as the tower layer answers it (also
            // one that a middleware around turned into an incomplete payload, or wrapped).
            PayloadError::Io(io) | PayloadError::Incomplete(Some(io)) if hookguard_core::body_error_timed_out(&io) => {
                Rejection::BodyReadTimeout
            }
            _ => Rejection::BodyReadFailed,
        })?;
        len = len.saturating_add(chunk.len());
        if len > limit {
            return Err(Rejection::BodyTooLarge { limit });
        }
        match first.take() {
            None if rest.is_empty() => first = Some(chunk),
            Some(f) => {
                let declared = head.content_length().unwrap_or(len);
                rest.reserve(hookguard_core::join_capacity(len, declared, limit));
                rest.extend_from_slice(&f);
                rest.extend_from_slice(&chunk);
            }
            None => rest.extend_from_slice(&chunk),
        }
    }
    Ok(first.unwrap_or_else(|| rest.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    /// A body in two pieces under a large declared `Content-Length` reserves what arrived plus
    /// 64 KiB, not the whole declaration: the sender is not yet authenticated and may trickle.
    #[actix_web::test]
    async fn a_declared_length_reserves_no_more_than_what_arrived_and_64_kib() {
        let req = TestRequest::post()
            .insert_header(("content-length", (1usize << 20).to_string()))
            .to_http_request();
        let head = Head::new(req.head()).unwrap();
        let pieces: [Result<Bytes, PayloadError>; 2] = [Ok(Bytes::from_static(b"{")), Ok(Bytes::from_static(b"}"))];
        let stream: std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, PayloadError>>>> =
            Box::pin(futures_util::stream::iter(pieces));
        let mut payload = Payload::Stream { payload: stream };
        let body = read_body(&mut payload, &head, 1 << 20).await.unwrap();
        let joined = body.try_into_mut().expect("one owner");
        assert_eq!(&joined[..], b"{}");
        assert!(joined.capacity() <= 2 + 64 * 1024, "{}", joined.capacity());
    }

    /// A payload's errors: a time-out is retried (408), an overflow is `body_too_large` (503), a broken
    /// connection 400 — as the tower layer answers them.
    #[actix_web::test]
    async fn payload_errors_are_answered_as_what_they_are() {
        let req = TestRequest::post().to_http_request();
        let head = Head::new(req.head()).unwrap();
        for (error, want) in [
            (
                PayloadError::Io(std::io::ErrorKind::TimedOut.into()),
                Rejection::BodyReadTimeout,
            ),
            (PayloadError::Overflow, Rejection::BodyTooLarge { limit: 8 }),
            (PayloadError::Incomplete(None), Rejection::BodyReadFailed),
            (
                PayloadError::Incomplete(Some(std::io::Error::other(std::io::Error::from(
                    std::io::ErrorKind::TimedOut,
                )))),
                Rejection::BodyReadTimeout,
            ),
            (
                PayloadError::Io(std::io::ErrorKind::ConnectionReset.into()),
                Rejection::BodyReadFailed,
            ),
        ] {
            let pieces: [Result<Bytes, PayloadError>; 2] = [Ok(Bytes::from_static(b"{")), Err(error)];
            let stream: std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, PayloadError>>>> =
                Box::pin(futures_util::stream::iter(pieces));
            let mut payload = Payload::Stream { payload: stream };
            assert_eq!(read_body(&mut payload, &head, 8).await, Err(want));
        }
    }

    #[test]
    fn head_keeps_method_query_and_every_header_value() {
        let req = TestRequest::post()
            .uri("/hooks/hcss?token=a%2Bb&x=1")
            .append_header(("x-multi", "1"))
            .append_header(("x-multi", "22"))
            .append_header(("x-empty", ""))
            .append_header(("Authorization", "Bearer t"))
            .append_header(("content-type", "application/json"))
            .to_http_request();
        let head = Head::new(req.head()).unwrap();
        let core = head.as_core();
        assert_eq!(core.method, http::Method::POST);
        assert_eq!(core.uri.path(), "/hooks/hcss");
        assert_eq!(core.uri.query(), Some("token=a%2Bb&x=1"));
        let multi: Vec<_> = core.headers.get_all("x-multi").iter().collect();
        assert_eq!(multi, ["1", "22"]);
        assert_eq!(core.headers["x-empty"], "");
        assert_eq!(core.headers["authorization"], "Bearer t");
        assert_eq!(core.headers["content-type"], "application/json");
        assert_eq!(core.headers.len(), req.headers().len());
    }

    /// `(name, value)` pairs of a converted head, in order.
    fn pairs(head: &Head) -> Vec<(String, String)> {
        let core = head.as_core();
        core.headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect()
    }

    #[test]
    fn recent_names_and_targets_are_used_only_when_they_match() {
        let mut recent = Recent::default();
        let req = |uri: &str, names: &[&str]| {
            let mut r = TestRequest::post().uri(uri);
            for (i, n) in names.iter().enumerate() {
                r = r.append_header((*n, format!("v{i}")));
            }
            r.to_http_request()
        };
        let first = req("/hooks/a", &["x-one", "content-type", "x-two"]);
        let a = Head::with(first.head(), Some(&mut recent)).unwrap();
        assert_eq!(a.uri, "/hooks/a");
        // The same names and target again: the same head as a fresh conversion.
        let again = Head::with(first.head(), Some(&mut recent)).unwrap();
        assert_eq!(again.uri, a.uri);
        assert_eq!(pairs(&again), pairs(&Head::new(first.head()).unwrap()));
        // Other names, another target, each one byte apart: never the old ones.
        let other = req("/hooks/b", &["x-onf", "x-two", "content-type", "x-three"]);
        let b = Head::with(other.head(), Some(&mut recent)).unwrap();
        assert_eq!(b.uri, "/hooks/b");
        assert_eq!(pairs(&b), pairs(&Head::new(other.head()).unwrap()));
        assert_eq!(b.headers["x-onf"], "v0");
        assert_eq!(b.headers["x-two"], "v1");
        assert!(!b.headers.contains_key("x-one"));
        // A target with a query (HCSS's URL token) is converted but not kept.
        let token = req("/hooks/b?token=s3cret", &[]);
        assert_eq!(
            Head::with(token.head(), Some(&mut recent)).unwrap().uri,
            "/hooks/b?token=s3cret"
        );
        assert_eq!(recent.uri.as_ref().map(|(seen, _)| seen.as_str()), Some("/hooks/b"));
        assert_eq!(Head::with(other.head(), Some(&mut recent)).unwrap().uri, "/hooks/b");
        // More names than are kept: all converted, at most `RECENT_NAMES` remembered, and the
        // names seen last are among them.
        let many: Vec<String> = (0..RECENT_NAMES + 8).map(|i| format!("x-h{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let big = req("/", &many);
        for _ in 0..2 {
            let h = Head::with(big.head(), Some(&mut recent)).unwrap();
            assert_eq!(pairs(&h), pairs(&Head::new(big.head()).unwrap()));
            assert_eq!(h.headers.len(), RECENT_NAMES + 8);
        }
        assert_eq!(recent.names.len(), RECENT_NAMES);
        let again = Head::with(other.head(), Some(&mut recent)).unwrap();
        assert_eq!(pairs(&again), pairs(&Head::new(other.head()).unwrap()));
    }

    proptest::proptest! {
        /// Over any sequence of requests through one middleware (targets with and without a
        /// query, more distinct names than are kept, repeated names), the head converted with
        /// `Recent` is the head converted afresh; `Recent` never keeps a query nor more than
        /// `RECENT_NAMES` names.
        #[test]
        fn recent_never_changes_a_head(
            requests in proptest::collection::vec(
                (
                    proptest::sample::select(vec!["/hooks/a", "/hooks/b", "/hooks/a?token=t", "/", "/hooks/a?", "/x%2Fy"]),
                    proptest::collection::vec((0usize..48, "[a-z0-9 ]{0,6}"), 0..12),
                ),
                1..10,
            )
        ) {
            let mut recent = Recent::default();
            for (uri, headers) in &requests {
                let mut r = TestRequest::post().uri(uri);
                for (n, v) in headers {
                    let name = if *n % 7 == 0 { "content-type".to_owned() } else { format!("x-h{n}") };
                    r = r.append_header((name, v.as_str()));
                }
                let req = r.to_http_request();
                let fresh = Head::new(req.head()).unwrap();
                let cached = Head::with(req.head(), Some(&mut recent)).unwrap();
                proptest::prop_assert_eq!(&cached.method, &fresh.method);
                proptest::prop_assert_eq!(cached.uri.to_string(), fresh.uri.to_string());
                proptest::prop_assert_eq!(pairs(&cached), pairs(&fresh));
                proptest::prop_assert!(recent.uri.as_ref().is_none_or(|(seen, _)| seen.query().is_none()));
                proptest::prop_assert!(recent.names.len() <= RECENT_NAMES);
            }
        }
    }

    proptest::proptest! {
        /// Any head actix accepts converts to the same head in `http` 1.x: the method, the
        /// target, and under every name the same values, byte for byte (obs-text included) and
        /// in order; nothing more.
        #[test]
        fn a_head_converts_to_the_same_head(
            method in "[A-Z]{1,8}|[!#$%&'*+.^_`|~0-9a-z-]{1,8}",
            uri in "/[a-zA-Z0-9/._~%!$&'()*+,;=:@-]{0,20}(\\?[a-zA-Z0-9/?=&%+._~-]{0,20})?",
            headers in proptest::collection::vec(
                (
                    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}|content-type|x-h1",
                    proptest::collection::vec(proptest::prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, proptest::strategy::Just(b'\t')], 0..16),
                ),
                0..12,
            ),
        ) {
            // (Both `http` versions refuse the same few tokens, such as `#`.)
            let method = actix_web::http::Method::from_bytes(method.as_bytes());
            proptest::prop_assume!(method.is_ok());
            let mut r = TestRequest::default().method(method.unwrap()).uri(&uri);
            for (name, value) in &headers {
                let value = actix_header::HeaderValue::from_bytes(value).unwrap();
                r = r.append_header((actix_header::HeaderName::from_bytes(name.as_bytes()).unwrap(), value));
            }
            let req = r.to_http_request();
            let actix = req.head();
            let head = Head::new(actix).unwrap();
            proptest::prop_assert_eq!(head.method.as_str(), actix.method.as_str());
            proptest::prop_assert_eq!(head.uri.to_string(), actix.uri.to_string());
            proptest::prop_assert_eq!(head.headers.len(), actix.headers.len());
            for name in actix.headers.keys() {
                let ours: Vec<&[u8]> = head.headers.get_all(name.as_str()).iter().map(|v| v.as_bytes()).collect();
                let theirs: Vec<&[u8]> = actix.headers.get_all(name).map(|v| v.as_bytes()).collect();
                proptest::prop_assert_eq!(ours, theirs, "values of {}", name);
            }
        }
    }

    #[test]
    fn response_keeps_status_headers_and_body() {
        let core = hookguard_core::response::rejection(&Rejection::DuplicateInFlight);
        let res = response(&core);
        assert_eq!(res.status().as_u16(), 429);
        assert_eq!(res.headers().get("retry-after").unwrap(), "5");
        assert_eq!(res.headers().get("content-type").unwrap(), "application/json");
        assert_eq!(res.headers().get("x-content-type-options").unwrap(), "nosniff");
        let body = actix_web::body::to_bytes(res.into_body());
        let body = futures_util::FutureExt::now_or_never(body).unwrap().unwrap();
        assert_eq!(body, Rejection::DuplicateInFlight.json_body());
    }

    fn payload(chunks: &[&'static [u8]]) -> Payload {
        let chunks: Vec<Result<Bytes, PayloadError>> = chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        Payload::Stream {
            payload: Box::pin(futures_util::stream::iter(chunks)),
        }
    }

    #[actix_web::test]
    async fn read_body_is_bounded_and_joins_chunks() {
        let req = TestRequest::post().to_http_request();
        let head = Head::new(req.head()).unwrap();
        assert_eq!(read_body(&mut payload(&[b"abc"]), &head, 3).await.unwrap(), "abc");
        assert_eq!(
            read_body(&mut payload(&[b"ab", b"c", b"d"]), &head, 4).await.unwrap(),
            "abcd"
        );
        assert_eq!(read_body(&mut payload(&[]), &head, 4).await.unwrap(), "");
        assert_eq!(
            read_body(&mut payload(&[b"ab", b"cd", b"e"]), &head, 4).await,
            Err(Rejection::BodyTooLarge { limit: 4 })
        );
    }
}
