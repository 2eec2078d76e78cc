//! Request and reply types, the route table that maps a path to a handler and a route name,
//! and each service's error body.

use std::io::Read;

use serde_json::{json, Value};

use super::{compute, identity, image, network, Core};

/// A JSON request body larger than this is refused; only image uploads stream.
const MAX_JSON_BODY: u64 = 1 << 20;

/// The OpenStack service a path belongs to; it decides the path prefix and the error shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Service {
    Identity,
    Compute,
    Image,
    Network,
}

impl Service {
    /// The path prefix served, and the one used in route names (API version left out).
    const ALL: [(Service, &'static str, &'static str); 4] = [
        (Service::Identity, "/identity", "/identity"),
        (Service::Compute, "/compute/v2.1", "/compute"),
        (Service::Image, "/image/v2", "/image"),
        (Service::Network, "/network/v2.0", "/network"),
    ];

    fn routes(self) -> &'static [Route] {
        match self {
            Service::Identity => identity::ROUTES,
            Service::Compute => compute::ROUTES,
            Service::Image => image::ROUTES,
            Service::Network => network::ROUTES,
        }
    }

    /// An error reply in the shape this service's clients expect.
    pub fn error(self, status: u16, message: &str) -> Reply {
        let title = tiny_http::StatusCode(status).default_reason_phrase();
        let body = match self {
            Service::Compute => {
                let kind = match status {
                    400 => "badRequest",
                    403 => "forbidden",
                    404 => "itemNotFound",
                    409 => "conflictingRequest",
                    413 | 429 => "overLimit",
                    500.. => "computeFault",
                    _ => "error",
                };
                json!({ kind: { "message": message, "code": status } })
            }
            Service::Network => json!({
                "NeutronError": {
                    "type": format!("HTTP{}", title.replace(' ', "")),
                    "message": message,
                    "detail": "",
                }
            }),
            Service::Identity | Service::Image => json!({
                "error": { "code": status, "title": title, "message": message }
            }),
        };
        Reply::json(status, body)
    }
}

pub(crate) type Handled = Result<Reply, Reply>;

/// One row of a service's route table; a `{name}` segment in `path` matches any one segment.
pub(crate) struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub handler: fn(&Core, &mut Req) -> Handled,
}

impl Route {
    pub const fn new(
        method: &'static str,
        path: &'static str,
        handler: fn(&Core, &mut Req) -> Handled,
    ) -> Route {
        Route {
            method,
            path,
            handler,
        }
    }
}

/// What `resolve` found for a request.
pub(crate) struct Resolved {
    pub service: Service,
    /// "METHOD /service/template", e.g. "GET /compute/servers/{id}".
    pub name: String,
    pub route: Option<&'static Route>,
    pub params: Vec<String>,
}

pub(crate) fn resolve(method: &str, path: &str) -> Resolved {
    let path = match path.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    };
    for (service, prefix, named) in Service::ALL {
        let Some(rest) = path.strip_prefix(prefix) else {
            continue;
        };
        if !(rest.is_empty() || rest.starts_with('/')) {
            continue;
        }
        for route in service.routes() {
            if route.method != method {
                continue;
            }
            if let Some(params) = match_template(route.path, rest) {
                return Resolved {
                    service,
                    name: format!("{method} {named}{}", route.path),
                    route: Some(route),
                    params,
                };
            }
        }
        return unmatched(service, method);
    }
    unmatched(Service::Identity, method)
}

fn unmatched(service: Service, method: &str) -> Resolved {
    Resolved {
        service,
        name: format!("{method} (unmatched)"),
        route: None,
        params: Vec::new(),
    }
}

fn match_template(template: &str, path: &str) -> Option<Vec<String>> {
    let mut want = template.split('/');
    let mut have = path.split('/');
    let mut params = Vec::new();
    loop {
        match (want.next(), have.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(segment)) if w.starts_with('{') && !segment.is_empty() => {
                params.push(percent_decode(segment))
            }
            (Some(w), Some(h)) if w == h => {}
            _ => return None,
        }
    }
}

/// Nova's newest microversion at the time of writing; what "latest" asks for.
const LATEST_MICROVERSION: (u32, u32) = (2, 96);

/// The compute microversion asked for, from either header style; 2.1 when none.
pub(crate) fn microversion(legacy: Option<String>, generic: Option<String>) -> (u32, u32) {
    let generic = generic.and_then(|v| {
        v.strip_prefix("compute ")
            .map(|version| version.trim().to_owned())
    });
    generic
        .or(legacy)
        .and_then(|v| {
            if v.trim() == "latest" {
                return Some(LATEST_MICROVERSION);
            }
            let (major, minor) = v.trim().split_once('.')?;
            Some((major.parse().ok()?, minor.parse().ok()?))
        })
        .unwrap_or((2, 1))
}

pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = || std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok();
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match hex().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(byte) => {
                    out.push(byte);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A request as a handler sees it.
pub(crate) struct Req<'a> {
    pub service: Service,
    /// The `{}` segments of the route template, decoded.
    pub params: Vec<String>,
    pub query: Vec<(String, String)>,
    pub microversion: (u32, u32),
    pub body: &'a mut dyn Read,
    /// The simulator's base URL, for links.
    pub url: &'a str,
}

impl Req<'_> {
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The `limit` query parameter capped at `page_size` (which is also the default).
    pub fn limit(&self, page_size: usize) -> Result<usize, Reply> {
        let page_size = page_size.max(1);
        match self.query("limit") {
            None => Ok(page_size),
            Some(text) => match text.parse::<usize>() {
                Ok(limit) => Ok(limit.clamp(1, page_size)),
                Err(_) => Err(self.fail(400, &format!("limit must be an integer, not {text:?}"))),
            },
        }
    }

    pub fn fail(&self, status: u16, message: &str) -> Reply {
        self.service.error(status, message)
    }

    /// The body as a JSON object (an empty body is an empty object); 400 when it is not one.
    pub fn json(&mut self) -> Result<serde_json::Map<String, Value>, Reply> {
        let mut text = Vec::new();
        let read = (&mut self.body)
            .take(MAX_JSON_BODY + 1)
            .read_to_end(&mut text);
        if let Err(e) = read {
            return Err(self.fail(400, &format!("reading the request body: {e}")));
        }
        if text.len() as u64 > MAX_JSON_BODY {
            return Err(self.fail(413, "request body too large"));
        }
        if text.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Map::new());
        }
        match serde_json::from_slice(&text) {
            Ok(Value::Object(object)) => Ok(object),
            Ok(_) => Err(self.fail(400, "the request body must be a JSON object")),
            Err(e) => Err(self.fail(400, &format!("malformed JSON in the request body: {e}"))),
        }
    }

    /// `body[key]` as an object; 400 naming the key when it is missing or not an object.
    pub fn member(
        &self,
        mut body: serde_json::Map<String, Value>,
        key: &str,
    ) -> Result<serde_json::Map<String, Value>, Reply> {
        match body.remove(key) {
            Some(Value::Object(member)) => Ok(member),
            _ => Err(self.fail(
                400,
                &format!("expected an object {key:?} in the request body"),
            )),
        }
    }
}

/// A reply before it becomes a `tiny_http::Response`.
pub(crate) struct Reply {
    pub status: u16,
    headers: Vec<(String, String)>,
    body: Option<Value>,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Some(body),
        }
    }

    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn into_response(self) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
        let data = self.body.as_ref().map(Value::to_string).unwrap_or_default();
        // Content-Length on every answer, as Nova, Glance and Keystone send it (tiny_http
        // would switch large ones to chunked encoding).
        let mut response = tiny_http::Response::from_data(data)
            .with_status_code(self.status)
            .with_chunked_threshold(usize::MAX);
        let content_type = ("Content-Type", "application/json");
        let json = self.body.is_some().then_some(content_type);
        let headers = self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
        for (name, value) in json.into_iter().chain(headers) {
            if let Ok(header) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
                response.add_header(header);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_names_leave_out_the_api_version() {
        let resolved = resolve("GET", "/compute/v2.1/servers/abc/");
        assert_eq!(resolved.name, "GET /compute/servers/{id}");
        assert_eq!(resolved.params, ["abc"]);
        assert_eq!(resolve("GET", "/identity").name, "GET /identity");
        assert_eq!(resolve("GET", "/nowhere").name, "GET (unmatched)");
    }

    #[test]
    fn query_values_are_decoded() {
        let query = parse_query("name=Ubuntu%2022.04&limit=2&x");
        assert_eq!(query[0], ("name".into(), "Ubuntu 22.04".into()));
        assert_eq!(query[2], ("x".into(), String::new()));
        assert_eq!(percent_decode(&percent_encode("a b/%")), "a b/%");
    }

    #[test]
    fn microversion_reads_either_header() {
        assert_eq!(microversion(Some("2.45".into()), None), (2, 45));
        assert_eq!(microversion(None, Some("compute 2.60".into())), (2, 60));
        assert_eq!(
            microversion(Some("latest".into()), None),
            LATEST_MICROVERSION
        );
        assert_eq!(microversion(Some("two".into()), None), (2, 1));
    }
}
