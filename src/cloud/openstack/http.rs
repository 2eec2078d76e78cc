//! The one place nodepool talks HTTP to a cloud: a ureq agent with timeouts, bounded retries
//! with exponential backoff and jitter for idempotent calls, `Retry-After` honoured on 429 and
//! 413, `rate` spacing of mutating calls, per-route call accounting, error classification, and
//! redaction of secrets from every message.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cloud::gate::Gate;
use crate::cloud::{CloudError, CloudResult, ErrorKind};

/// How calls are retried; tests shorten the waits.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// First backoff; doubled each retry, plus up to 50% jitter.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Longest `Retry-After` we wait for; longer answers end as RateLimited.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

/// Timeouts of every call.
#[derive(Debug, Clone)]
pub struct Timeouts {
    pub connect: Duration,
    /// Whole call without a body upload (an answer must start and finish within it).
    pub call: Duration,
    /// Whole call that streams a body (an image upload): an hour, for gigabytes on a slow
    /// link.
    pub upload: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            call: Duration::from_secs(60),
            upload: Duration::from_secs(3600),
        }
    }
}

/// API calls per route (`GET compute /servers/detail`), shared by all providers of a run.
#[derive(Debug, Default, Clone)]
pub struct CallCounter(Arc<Mutex<BTreeMap<(String, String), u64>>>);

impl CallCounter {
    fn count(&self, provider: &str, route: &str) {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *counts
            .entry((provider.to_string(), route.to_string()))
            .or_default() += 1;
    }

    /// (provider, route) -> calls.
    pub fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }

    pub fn for_provider(&self, provider: &str) -> u64 {
        self.snapshot()
            .iter()
            .filter(|((p, _), _)| p == provider)
            .map(|(_, n)| n)
            .sum()
    }
}

/// A request body.
pub enum Body<'a> {
    None,
    Json(&'a Value),
    /// Streamed, never buffered whole, with its length (sent as Content-Length: Glance, and
    /// every proxy on the way, read a delimited body more cheaply than a chunked one).
    Stream(&'a mut dyn Read, u64),
}

impl<'a> Body<'a> {
    /// The same body for a second request, unless it is a stream (consumed by the first).
    pub fn again(&self) -> Option<Body<'a>> {
        match self {
            Body::None => Some(Body::None),
            Body::Json(value) => Some(Body::Json(value)),
            Body::Stream(..) => None,
        }
    }
}

/// An answer with a 2xx status.
pub struct Reply {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> CloudResult<Value> {
        if self.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(self.text()?)
            .map_err(|e| CloudError::new(ErrorKind::Malformed, format!("answer is not JSON: {e}")))
    }

    /// The body as a typed document.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> CloudResult<T> {
        serde_json::from_str(self.text()?)
            .map_err(|e| CloudError::new(ErrorKind::Malformed, format!("unexpected answer: {e}")))
    }

    /// The body checked as UTF-8 once, so the JSON parser need not check every string.
    fn text(&self) -> CloudResult<&str> {
        std::str::from_utf8(&self.body)
            .map_err(|e| CloudError::new(ErrorKind::Malformed, format!("answer is not UTF-8: {e}")))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// Per-connection buffers, allocated and zeroed whole for every pooled connection (one per
/// provider). ureq's 128 KiB defaults were a quarter of a 50-provider run's memory. The input
/// buffer must hold a whole response head, the output buffer a whole request head: the
/// largest are a token (Fernet or UUID: tens of bytes; 2015's PKI tokens: kilobytes, under
/// the 8–16 KiB header lines services accepted) and Keystone's reply carrying it.
const INPUT_BUFFER: usize = 32 * 1024;
const OUTPUT_BUFFER: usize = 16 * 1024;

/// Largest answer body we read; server lists of thousands fit many times over.
const MAX_BODY: u64 = 256 * 1024 * 1024;

/// Largest body buffer allocated on the strength of a Content-Length header alone.
const PRESIZE_MAX: u64 = 16 * 1024 * 1024;

/// The limit an attempt runs into first.
#[derive(Debug, Clone, Copy)]
enum Bound {
    /// The call's own (`api-timeout`).
    Call,
    /// The run's deadline.
    Run,
    /// The round's listing time (`listing-timeout`).
    Listing,
}

impl Bound {
    fn time(self) -> &'static str {
        match self {
            Bound::Call => "the call's time",
            Bound::Run => "the run's time",
            Bound::Listing => "the round's listing time",
        }
    }
}

pub struct Http {
    agent: ureq::Agent,
    provider: String,
    counter: CallCounter,
    retry: RetryPolicy,
    /// For messages: the limits a call that got no answer ran into.
    timeouts: Timeouts,
    /// The run's deadline, once set: no call starts after it, and each ends by it.
    deadline: Mutex<Option<Instant>>,
    /// While a round lists the clouds: the end of its listing time, an earlier bound than the
    /// run's, so one slow provider cannot hold up the round of all the others.
    listing_until: Mutex<Option<Instant>>,
    /// `rate`, `max-concurrency` and the cloud's `Retry-After`, for every thread of the run.
    gate: Gate,
    /// Strings that must never appear in a message (password, token).
    secrets: Mutex<Vec<String>>,
}

impl Http {
    pub fn new(
        provider: &str,
        timeouts: &Timeouts,
        retry: RetryPolicy,
        gate: Gate,
        counter: CallCounter,
    ) -> Http {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(timeouts.connect))
            .timeout_global(Some(timeouts.call))
            .http_status_as_error(false)
            .user_agent(concat!("nodepool/", env!("CARGO_PKG_VERSION")))
            .input_buffer_size(INPUT_BUFFER)
            .output_buffer_size(OUTPUT_BUFFER)
            .build();
        let agent = ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::default(),
            super::resolver::OnceResolver::default(),
        );
        Http {
            agent,
            provider: provider.to_string(),
            counter,
            retry,
            timeouts: timeouts.clone(),
            deadline: Mutex::new(None),
            listing_until: Mutex::new(None),
            gate,
            secrets: Mutex::new(Vec::new()),
        }
    }

    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// Bound every call from now on by `deadline`, the end of the run.
    pub fn set_deadline(&self, deadline: Instant) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = Some(deadline);
    }

    /// Bound the calls from now on by `until` as well (`None` lifts it): a round's listing.
    pub fn set_listing_bound(&self, until: Option<Instant>) {
        *self.listing_until.lock().unwrap_or_else(|e| e.into_inner()) = until;
    }

    /// The bound that ends first, if any, and which it is.
    fn bound(&self) -> Option<(Instant, Bound)> {
        let run = self
            .deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|at| (at, Bound::Run));
        let listing = self
            .listing_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|at| (at, Bound::Listing));
        match (run, listing) {
            (Some(run), Some(listing)) => Some(if listing.0 < run.0 { listing } else { run }),
            (run, listing) => run.or(listing),
        }
    }

    /// How long the next attempt may take: the call's own limit, or the time left before the
    /// run's deadline (or the round's listing bound) if that is shorter, and which of them
    /// it is; an error when that time is up.
    fn attempt_limit(&self, route: &str, streamed: bool) -> CloudResult<(Duration, Bound)> {
        let own = if streamed {
            self.timeouts.upload
        } else {
            self.timeouts.call
        };
        let Some((at, bound)) = self.bound() else {
            return Ok((own, Bound::Call));
        };
        let left = at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CloudError::new(
                ErrorKind::NotSent,
                format!(
                    "{}: {route}: not started: {} is up",
                    self.provider,
                    bound.time()
                ),
            ));
        }
        if left < own {
            Ok((left, bound))
        } else {
            Ok((own, Bound::Call))
        }
    }

    /// Never print `secret` in an error message.
    pub fn add_secret(&self, secret: &str) {
        if secret.len() >= 4 {
            self.secrets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(secret.to_string());
        }
    }

    fn redact(&self, message: String) -> String {
        let secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        secrets
            .iter()
            .fold(message, |m, s| m.replace(s.as_str(), "***"))
    }

    /// One call with retries. `route` names it for accounting and messages
    /// (`GET compute /servers/detail`); `headers` are extra request headers. GET, HEAD, PUT
    /// and DELETE are repeated on a 5xx or no answer; a POST is not (it may have taken
    /// effect), unless it is `call_repeatable`.
    pub fn call(
        &self,
        method: &str,
        url: &str,
        route: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> CloudResult<Reply> {
        let idempotent = matches!(method, "GET" | "HEAD" | "PUT" | "DELETE");
        self.call_retrying(method, url, route, headers, body, idempotent)
    }

    /// A POST that is safe to repeat, such as a token request (a second one only gives a
    /// second token): retried like a GET.
    pub fn call_repeatable(
        &self,
        method: &str,
        url: &str,
        route: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> CloudResult<Reply> {
        self.call_retrying(method, url, route, headers, body, true)
    }

    fn call_retrying(
        &self,
        method: &str,
        url: &str,
        route: &str,
        headers: &[(&str, &str)],
        mut body: Body<'_>,
        idempotent: bool,
    ) -> CloudResult<Reply> {
        let mutating = method != "GET" && method != "HEAD";
        // A streamed body cannot be sent twice.
        let repeatable = !matches!(body, Body::Stream(..));
        let mut backoff = self.retry.backoff;
        let mut attempt = 1;
        // The last attempt's error, while a retry is pending: if the retry cannot be sent,
        // that is the answer (the call may have taken effect), not "not sent".
        let mut previous: Option<CloudError> = None;
        loop {
            // The provider's turn first (held while the call is in flight), then the limit
            // of what time is left after waiting for it.
            let Some(permit) = self.gate.enter(mutating, self.bound().map(|(at, _)| at)) else {
                if let Some(error) = previous {
                    return Err(error);
                }
                let time = self
                    .bound()
                    .map_or("the call's time", |(_, bound)| bound.time());
                return Err(CloudError::new(
                    ErrorKind::NotSent,
                    format!(
                        "{}: {route}: not started: its turn at the provider (rate, \
                         max-concurrency, or the cloud's Retry-After) comes after {time} is up",
                        self.provider
                    ),
                ));
            };
            let (limit, bound) = match self.attempt_limit(route, !repeatable) {
                Ok(limit) => limit,
                Err(not_sent) => return Err(previous.unwrap_or(not_sent)),
            };
            self.counter.count(&self.provider, route);
            log::debug!("{}: {route} (attempt {attempt})", self.provider);
            let outcome = match self.send(method, url, headers, &mut body, limit) {
                Ok(reply) if (200..300).contains(&reply.status) => return Ok(reply),
                other => other,
            };
            drop(permit);
            let last = attempt >= self.retry.attempts || !repeatable;
            // The cloud's rate limit holds for every call to it: it pauses the gate.
            let (wait, pauses) = match &outcome {
                // A 413 about quota is final; other 413s and every 429 are rate limits.
                Ok(reply)
                    if reply.status == 429 || (reply.status == 413 && !is_quota(&reply.body)) =>
                {
                    match retry_after(reply) {
                        Some(wait) if wait <= self.retry.max_retry_after => (Some(wait), true),
                        Some(_) => (None, false),
                        None => (Some(jittered(backoff)), true),
                    }
                }
                Ok(reply) if reply.status >= 500 && idempotent => (Some(jittered(backoff)), false),
                Err(_) if idempotent => (Some(jittered(backoff)), false),
                _ => (None, false),
            };
            if let (Some(wait), true) = (wait, pauses) {
                self.gate.pause(wait);
            }
            // A retry that could not start before the bound ends is not waited for: the
            // error is this attempt's, not "time is up".
            let in_time = |wait: Duration| {
                self.bound()
                    .is_none_or(|(at, _)| Instant::now() + wait < at)
            };
            match wait {
                Some(wait) if !last && in_time(wait) => {
                    log::debug!(
                        "{}: {route}: retrying in {} ms",
                        self.provider,
                        wait.as_millis()
                    );
                    // A paused gate makes the next attempt wait its turn instead.
                    if !pauses {
                        std::thread::sleep(wait);
                    }
                    backoff = (backoff * 2).min(self.retry.max_backoff);
                    previous = Some(self.classify(route, url, outcome, attempt, (limit, bound)));
                    attempt += 1;
                }
                _ => return Err(self.classify(route, url, outcome, attempt, (limit, bound))),
            }
        }
    }

    /// One attempt, ending within `limit` (the call's own, or the run's time left).
    fn run<B: ureq::AsSendBody>(
        &self,
        request: ureq::http::Request<B>,
        limit: Duration,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let request = self
            .agent
            .configure_request(request)
            .timeout_global(Some(limit))
            .build();
        self.agent.run(request)
    }

    fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &mut Body<'_>,
        limit: Duration,
    ) -> Result<Reply, String> {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(url)
            .header("Accept", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = match body {
            Body::None => self.run(request.body(()).map_err(|e| e.to_string())?, limit),
            Body::Json(value) => {
                let bytes = serde_json::to_vec(value).map_err(|e| e.to_string())?;
                let request = request
                    .header("Content-Type", "application/json")
                    .body(bytes)
                    .map_err(|e| e.to_string())?;
                self.run(request, limit)
            }
            Body::Stream(reader, length) => {
                let request = request
                    .header("Content-Type", "application/octet-stream")
                    .header("Content-Length", length.to_string())
                    .body(ureq::SendBody::from_reader(*reader))
                    .map_err(|e| e.to_string())?;
                self.run(request, limit)
            }
        };
        let mut response = response.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().ok()?.to_string(),
                ))
            })
            .collect();
        // Sized from Content-Length (up to a bound a lying server cannot abuse): a server list
        // read into a doubling buffer briefly held twice its size.
        let expected = response
            .body()
            .content_length()
            .unwrap_or(0)
            .min(PRESIZE_MAX);
        let mut body = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
        response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .reader()
            .read_to_end(&mut body)
            .map_err(|e| e.to_string())?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    fn classify(
        &self,
        route: &str,
        url: &str,
        outcome: Result<Reply, String>,
        attempts: u32,
        (limit, bound): (Duration, Bound),
    ) -> CloudError {
        let tries = if attempts > 1 {
            format!(" after {attempts} attempts")
        } else {
            String::new()
        };
        let (kind, message) = match outcome {
            // No answer: say where it was asked, and which limit ran out.
            Err(transport) => {
                let to = origin(url);
                let message = if transport.starts_with("timeout") {
                    let which = match bound {
                        Bound::Call => {
                            format!("api-timeout; connect {} s", self.timeouts.connect.as_secs())
                        }
                        Bound::Run => "the run's time left".into(),
                        Bound::Listing => "listing-timeout".into(),
                    };
                    format!(
                        "{route} to {to}: no answer within {} s{tries} ({which})",
                        limit.as_secs_f64().ceil() as u64
                    )
                } else {
                    let why = transport.trim_start_matches("io: ");
                    format!("{route} to {to}: no answer{tries}: {why}")
                };
                (ErrorKind::Transport, message)
            }
            Ok(reply) => {
                let cloud_message = error_message(&reply.body);
                let kind = match reply.status {
                    401 => ErrorKind::AuthFailed,
                    404 => ErrorKind::NotFound,
                    403 | 413 if is_quota(&reply.body) => ErrorKind::QuotaExceeded,
                    429 | 413 => ErrorKind::RateLimited,
                    status => ErrorKind::Api { status },
                };
                (
                    kind,
                    format!("{route}: HTTP {}{tries}: {cloud_message}", reply.status),
                )
            }
        };
        CloudError::new(kind, self.redact(format!("{}: {message}", self.provider)))
    }
}

/// `scheme://host:port` of a URL, for messages (the path can hold ids; the host is what an
/// operator checks).
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(slash) => &url[..after_scheme + slash],
        None => url,
    }
}

fn jittered(backoff: Duration) -> Duration {
    backoff + backoff.mul_f64(fastrand::f64() * 0.5)
}

/// `Retry-After` in seconds (the HTTP-date form is rare from OpenStack; treated as absent).
fn retry_after(reply: &Reply) -> Option<Duration> {
    reply
        .header("retry-after")?
        .trim()
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}

fn is_quota(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    text.contains("quota") || text.contains("limit exceeded")
}

/// The cloud's own message from the usual OpenStack error shapes:
/// `{"itemNotFound": {"message": …}}`, `{"error": {"message": …}}`, `{"NeutronError": …}`,
/// `{"message": …}`, or the text itself.
pub fn error_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let found = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|value| {
            if let Some(message) = value.get("message").and_then(Value::as_str) {
                return Some(message.to_string());
            }
            value.as_object()?.values().find_map(|inner| {
                let message = inner.get("message")?;
                Some(
                    message
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| message.to_string()),
                )
            })
        });
    let message = found.unwrap_or_else(|| text.trim().to_string());
    let mut message: String = message.chars().take(500).collect();
    if message.is_empty() {
        message = "(empty answer)".into();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_messages_are_found_in_the_usual_shapes() {
        assert_eq!(
            error_message(
                br#"{"itemNotFound": {"message": "Instance x could not be found.", "code": 404}}"#
            ),
            "Instance x could not be found."
        );
        assert_eq!(error_message(br#"{"error": {"message": "The request you have made requires authentication.", "code": 401}}"#), "The request you have made requires authentication.");
        assert_eq!(
            error_message(
                br#"{"NeutronError": {"message": "Network not found", "type": "NetworkNotFound"}}"#
            ),
            "Network not found"
        );
        assert_eq!(
            error_message(b"404 Not Found\n\nThe resource could not be found."),
            "404 Not Found\n\nThe resource could not be found."
        );
        assert_eq!(error_message(b""), "(empty answer)");
    }

    /// The largest heads nodepool may meet (2015's PKI tokens, kilobytes long, sent and
    /// received) fit the connection buffers, and a large body arrives whole.
    #[test]
    fn pki_sized_tokens_and_large_bodies_fit_the_buffers() {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v3/auth/tokens", server.server_addr());
        let token = "P".repeat(12 * 1024);
        let body = format!("[{}]", vec!["\"x\""; 50_000].join(","));
        let answer = std::thread::scope(|scope| {
            let serving = scope.spawn(|| {
                let request = server
                    .recv_timeout(Duration::from_secs(10))
                    .unwrap()
                    .unwrap();
                let sent = request
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("X-Auth-Token"))
                    .map(|h| h.value.len());
                let reply = tiny_http::Response::from_data(body.clone())
                    .with_chunked_threshold(usize::MAX)
                    .with_header(
                        tiny_http::Header::from_bytes("X-Subject-Token", token.as_str()).unwrap(),
                    );
                request.respond(reply).unwrap();
                sent
            });
            let http = client(&Timeouts::default(), RetryPolicy::default());
            let reply = http.call(
                "GET",
                &url,
                "GET identity /v3/auth/tokens",
                &[("X-Auth-Token", token.as_str())],
                Body::None,
            );
            (serving.join().unwrap(), reply)
        });
        let (sent, reply) = answer;
        assert_eq!(sent, Some(token.len()));
        let reply = reply.unwrap();
        assert_eq!(reply.header("X-Subject-Token"), Some(token.as_str()));
        assert_eq!(reply.body.len(), body.len());
    }

    /// A client of provider `p1` with an open gate.
    fn client(timeouts: &Timeouts, retry: RetryPolicy) -> Http {
        Http::new(
            "p1",
            timeouts,
            retry,
            Gate::new(Duration::ZERO, None),
            CallCounter::default(),
        )
    }

    /// A listener that accepts (the kernel does) and never reads or answers, and a client
    /// with `timeouts` that tries once.
    fn silent_server(timeouts: &Timeouts) -> (std::net::TcpListener, String, Http) {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let origin = format!("http://{}", silent.local_addr().unwrap());
        let retry = RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        };
        (silent, origin, client(timeouts, retry))
    }

    fn list_servers(http: &Http, origin: &str) -> CloudError {
        let url = format!("{origin}/compute/servers/detail");
        let started = std::time::Instant::now();
        let Err(error) = http.call("GET", &url, "GET compute /servers/detail", &[], Body::None)
        else {
            panic!("a listener that never answers gave an answer");
        };
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        error
    }

    #[test]
    fn a_listener_that_never_answers_is_named_with_the_limit_that_ran_out() {
        let timeouts = Timeouts {
            connect: Duration::from_secs(1),
            call: Duration::from_secs(1),
            ..Timeouts::default()
        };
        let (_silent, origin, http) = silent_server(&timeouts);
        let error = list_servers(&http, &origin);
        assert_eq!(error.kind, ErrorKind::Transport);
        assert_eq!(
            error.message,
            format!(
                "p1: GET compute /servers/detail to {origin}: no answer within 1 s \
                 (api-timeout; connect 1 s)"
            )
        );
    }

    #[test]
    fn a_call_ends_by_the_runs_deadline_and_none_starts_after_it() {
        let (_silent, origin, http) = silent_server(&Timeouts::default()); // 60 s per call
        http.set_deadline(std::time::Instant::now() + Duration::from_secs(1));
        let error = list_servers(&http, &origin);
        assert!(
            error
                .message
                .contains("no answer within 1 s (the run's time left)"),
            "{error}"
        );
        std::thread::sleep(Duration::from_millis(100));
        let late = list_servers(&http, &origin);
        assert!(
            late.message.contains("not started: the run's time is up")
                && late.kind == ErrorKind::NotSent,
            "{late}"
        );
    }

    #[test]
    fn a_retry_that_would_start_after_the_deadline_is_not_waited_for() {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let url = format!("http://{}/compute/servers/detail", server.server_addr());
        let serving = std::thread::spawn(move || {
            // Bounded: one request is expected; a second would be a retry past the deadline.
            let mut answered = 0;
            while let Ok(Some(request)) = server.recv_timeout(Duration::from_secs(4)) {
                answered += 1;
                request
                    .respond(tiny_http::Response::from_string("busy").with_status_code(503))
                    .unwrap();
            }
            answered
        });
        let retry = RetryPolicy {
            attempts: 4,
            backoff: Duration::from_secs(3),
            max_backoff: Duration::from_secs(3),
            ..RetryPolicy::default()
        };
        let http = client(&Timeouts::default(), retry);
        http.set_deadline(std::time::Instant::now() + Duration::from_secs(1));
        let started = std::time::Instant::now();
        let Err(error) = http.call("GET", &url, "GET compute /servers/detail", &[], Body::None)
        else {
            panic!("a 503 is not an answer");
        };
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(
            error.message.contains("HTTP 503"),
            "the attempt's error: {error}"
        );
        assert_eq!(serving.join().unwrap(), 1);
    }

    #[test]
    fn a_429_pauses_every_caller_of_the_provider_not_just_its_own_call() {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let origin = format!("http://{}", server.server_addr());
        let started = std::time::Instant::now();
        let serving = std::thread::spawn(move || {
            // (method, when it arrived); bounded: three requests are expected.
            let mut seen = Vec::new();
            while let Ok(Some(request)) = server.recv_timeout(Duration::from_secs(5)) {
                seen.push((request.method().to_string(), started.elapsed()));
                let reply = if seen.len() == 1 {
                    tiny_http::Response::from_string("slow down")
                        .with_status_code(429)
                        .with_header(tiny_http::Header::from_bytes("Retry-After", "1").unwrap())
                } else {
                    tiny_http::Response::from_string("{}").with_status_code(200)
                };
                request.respond(reply).unwrap();
                if seen.len() == 3 {
                    break;
                }
            }
            seen
        });
        let http = client(&Timeouts::default(), RetryPolicy::default());
        let url = format!("{origin}/compute/servers");
        std::thread::scope(|scope| {
            let create = scope.spawn(|| {
                http.call("POST", &url, "POST compute /servers", &[], Body::None)
                    .map(|_| ())
            });
            // The second caller starts while the cloud's pause holds.
            std::thread::sleep(Duration::from_millis(300));
            let list = format!("{origin}/compute/servers/detail");
            let listed = http.call("GET", &list, "GET compute /servers/detail", &[], Body::None);
            assert!(listed.is_ok());
            assert!(
                create.join().unwrap().is_ok(),
                "the create was retried after the pause"
            );
        });
        let seen = serving.join().unwrap();
        assert_eq!(seen.len(), 3, "{seen:?}");
        for (method, at) in &seen[1..] {
            assert!(
                *at >= Duration::from_millis(950),
                "{method} at {at:?}: {seen:?}"
            );
        }
    }

    #[test]
    fn answers_that_are_not_utf8_or_not_json_are_errors() {
        let reply = |body: &[u8]| Reply {
            status: 200,
            headers: BTreeMap::new(),
            body: body.to_vec(),
        };
        let bad = reply(b"{\"servers\": \"\xff\"}");
        let err = bad.parse::<Value>().err().unwrap().to_string();
        assert!(err.contains("not UTF-8"), "{err}");
        assert!(bad.json().is_err());
        let err = reply(b"<html>").json().err().unwrap().to_string();
        assert!(err.contains("not JSON"), "{err}");
        assert_eq!(reply(b"").json().unwrap(), Value::Null);
    }

    #[test]
    fn a_retry_after_too_large_or_odd_is_no_wait_and_no_panic() {
        let reply = |value: &str| Reply {
            status: 429,
            headers: [("retry-after".to_string(), value.to_string())].into(),
            body: Vec::new(),
        };
        assert_eq!(retry_after(&reply("2")), Some(Duration::from_secs(2)));
        for odd in ["1e20", "-1", "NaN", "inf", "Wed, 21 Oct 2015 07:28:00 GMT"] {
            assert_eq!(retry_after(&reply(odd)), None, "{odd}");
        }
    }

    #[test]
    fn quota_answers_are_recognised() {
        assert!(is_quota(br#"{"forbidden": {"message": "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances", "code": 403}}"#));
        assert!(!is_quota(
            br#"{"forbidden": {"message": "Policy doesn't allow it", "code": 403}}"#
        ));
    }
}
