//! The HTTP deliveries that follow a run (`--webhook`, `--pushgateway`): one small
//! blocking client (ureq over rustls) with a timeout and one retry, called after the
//! async run has ended. A delivery that fails is the caller's warning, never the run's
//! failure. URLs are shown masked ([`Endpoint::masked`]): an incoming-webhook URL carries
//! its secret token in the path (Slack's `/services/T…/B…/TOKEN`), so only its scheme and
//! host ever reach a terminal, a log or a report.

use std::time::Duration;

/// How long one attempt may take, connect to last byte.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before the single retry: a receiver that just restarted gets a moment.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A validated `http` or `https` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    url: String,
    scheme: String,
    host: String,
}

impl std::fmt::Debug for Endpoint {
    /// Masked, like every other way of showing it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Endpoint({})", self.masked())
    }
}

impl Endpoint {
    /// Checks `url` (scheme `http` or `https`, a host); the error never repeats the URL.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let url = url.trim();
        if !url.contains("://") {
            return Err("no scheme: write it as https://host/path".into());
        }
        let uri: ureq::http::Uri = url.parse().map_err(|e| format!("not a URL ({e})"))?;
        let scheme = match uri.scheme_str() {
            Some(s @ ("http" | "https")) => s.to_string(),
            Some(other) => return Err(format!("scheme `{other}` is not http or https")),
            None => return Err("no scheme: write it as https://host/path".into()),
        };
        let host = match uri.host() {
            Some(h) if !h.is_empty() => h.to_string(),
            _ => return Err("no host".into()),
        };
        let host = match uri.port_u16() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        Ok(Endpoint {
            url: url.to_string(),
            scheme,
            host,
        })
    }

    /// `scheme://host[:port]/…`: what may be shown. The path, query and any user info
    /// stay hidden (they hold the secret of an incoming webhook).
    pub fn masked(&self) -> String {
        format!("{}://{}/…", self.scheme, self.host)
    }

    /// This URL with `path` appended (`path` starts with `/`), for the Pushgateway's
    /// `/metrics/job/…` below its base.
    pub fn join(&self, path: &str) -> Endpoint {
        Endpoint {
            url: format!("{}{path}", self.url.trim_end_matches('/')),
            ..self.clone()
        }
    }

    /// The full URL, for the request only.
    fn secret_url(&self) -> &str {
        &self.url
    }
}

/// The request method of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Put,
}

/// Sends `body` to `to`; `Ok` with the status when the receiver answered 2xx. A transport
/// error, a timeout, 429 or a 5xx is tried once more; other answers are final. The error
/// says what happened with the URL masked.
pub fn deliver(
    method: Method,
    to: &Endpoint,
    content_type: &str,
    body: &[u8],
) -> Result<u16, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        // A 4xx/5xx is an answer to report, not a transport failure.
        .http_status_as_error(false)
        .user_agent(concat!("carbonio-fleet/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut last = String::new();
    for attempt in 0..2 {
        if attempt > 0 {
            std::thread::sleep(RETRY_AFTER);
        }
        let request = match method {
            Method::Post => agent.post(to.secret_url()),
            Method::Put => agent.put(to.secret_url()),
        };
        match request.header("Content-Type", content_type).send(body) {
            Ok(resp) => {
                let status = resp.status().as_u16();
                if (200..300).contains(&status) {
                    return Ok(status);
                }
                last = format!("{} answered HTTP {status}", to.masked());
                if status != 429 && status < 500 {
                    break;
                }
            }
            Err(e) => last = format!("{}: {}", to.masked(), scrub(&e.to_string(), to)),
        }
    }
    Err(last)
}

/// `text` with any part of the secret URL replaced by its masked form (a transport error
/// may quote what it tried to reach).
fn scrub(text: &str, to: &Endpoint) -> String {
    let mut out = text.replace(to.secret_url(), &to.masked());
    if let Some(path_start) = to
        .secret_url()
        .find("://")
        .and_then(|i| to.secret_url()[i + 3..].find('/').map(|j| i + 3 + j))
    {
        let path = &to.secret_url()[path_start..];
        if path.len() > 1 {
            out = out.replace(path, "/…");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    #[test_case("https://hooks.slack.com/services/T000/B000/XXXXSECRET", "https://hooks.slack.com/…"; "slack")]
    #[test_case("http://user:pw@127.0.0.1:9091/", "http://127.0.0.1:9091/…"; "user info hidden")]
    #[test_case("https://acme.webhook.office.com/webhookb2/abc@def/IncomingWebhook/123/456?x=1", "https://acme.webhook.office.com/…"; "teams")]
    fn masked_urls_show_only_scheme_and_host(url: &str, shown: &str) {
        let e = Endpoint::parse(url).unwrap();
        assert_eq!(e.masked(), shown);
        assert_eq!(format!("{e:?}"), format!("Endpoint({shown})"));
    }

    #[test_case("ftp://example.com/x", "scheme `ftp` is not http or https")]
    #[test_case(
        "hooks.slack.com/services/T/B/X",
        "no scheme: write it as https://host/path"
    )]
    fn bad_urls_are_refused_without_echoing_them(url: &str, why: &str) {
        assert_eq!(Endpoint::parse(url).unwrap_err(), why);
    }

    #[test]
    fn join_appends_below_the_base() {
        let e = Endpoint::parse("http://127.0.0.1:9091/").unwrap();
        assert_eq!(
            e.join("/metrics/job/x").secret_url(),
            "http://127.0.0.1:9091/metrics/job/x"
        );
    }

    #[test]
    fn errors_quoting_the_url_are_scrubbed() {
        let e = Endpoint::parse("https://hooks.example/services/T/B/SECRET").unwrap();
        let text = scrub(
            "cannot reach https://hooks.example/services/T/B/SECRET (refused) /services/T/B/SECRET",
            &e,
        );
        assert!(!text.contains("SECRET"), "{text}");
    }
}
