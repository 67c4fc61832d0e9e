//! `--webhook` and `--pushgateway`: the real binary against the simulated fleet, with a
//! local HTTP receiver (a `TcpListener` on 127.0.0.1 that records each request and
//! answers a chosen status). What is asserted: the request's method, path, content type
//! and body; that the webhook fires only on new drift; that a receiver that fails or is
//! not there is a warning and leaves the exit code as it was; and that the webhook's
//! secret path appears in no output.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use carbonio_fleet::exit::ExitCode;
use carbonio_sim::node::Platform;
use carbonio_sim::{Fleet, FleetSpec, NodeProfile, NodeSpec, Posture, SimError};

/// One HTTP request as the receiver read it.
#[derive(Debug)]
struct Request {
    method: String,
    path: String,
    content_type: String,
    body: Vec<u8>,
}

/// A local HTTP receiver answering every request with `status`.
struct Receiver {
    addr: SocketAddr,
    requests: mpsc::Receiver<Request>,
}

impl Receiver {
    fn start(status: u16) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, requests) = mpsc::channel();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let Some(req) = read_request(&mut conn) else {
                    continue;
                };
                // Recorded before the answer: once the client has its answer (and the
                // binary has exited), the request is in the channel.
                if tx.send(req).is_err() {
                    return;
                }
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} Status\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Receiver { addr, requests }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request received so far.
    fn received(&self) -> Vec<Request> {
        self.requests.try_iter().collect()
    }
}

fn read_request(conn: &mut std::net::TcpStream) -> Option<Request> {
    let mut r = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let (mut length, mut content_type) = (0usize, String::new());
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        match k.to_ascii_lowercase().as_str() {
            "content-length" => length = v.trim().parse().ok()?,
            "content-type" => content_type = v.trim().to_string(),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        content_type,
        body,
    })
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

struct Sim {
    fleet: Fleet,
    dir: tempfile::TempDir,
}

impl Sim {
    async fn start(posture: Posture) -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let spec = FleetSpec {
            nodes: vec![NodeSpec {
                name: "d1".into(),
                cluster: "d".into(),
                profile: NodeProfile {
                    platform: Platform::Legacy,
                    posture,
                    spawn_user_fixed: true,
                    ..NodeProfile::default()
                },
                groups: Vec::new(),
            }],
            restart_time: Duration::from_millis(50),
            ..FleetSpec::default()
        };
        for _ in 0..30 {
            let mut s = spec.clone();
            s.port_base = rand::random_range(20000u16..60000);
            match Fleet::start(s, dir.path()).await {
                Ok(fleet) => return Sim { fleet, dir },
                Err(SimError::Bind { .. }) => continue,
                Err(e) => panic!("fleet failed to start: {e}"),
            }
        }
        panic!("no free port range");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `check` with `args`, reports in `reports` under the fleet's directory.
    async fn check(&self, reports: &str, args: &[&str]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_carbonio-fleet"));
        c.arg("check")
            .args(args)
            .arg("-i")
            .arg(self.fleet.inventory_path())
            .arg("--report-dir")
            .arg(self.path(reports))
            .args(["--progress", "never"])
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("CARBONIO_FLEET_WEBHOOK_URL")
            .env_remove("CARBONIO_FLEET_PUSHGATEWAY_URL")
            .stdin(Stdio::null());
        tokio::task::spawn_blocking(move || c.output().unwrap())
            .await
            .unwrap()
    }

    /// Turns the policy daemon off in the node's cluster: BS-01 drifts.
    fn drift(&self) {
        self.fleet
            .node("d1")
            .unwrap()
            .node()
            .cluster
            .ldap()
            .global
            .insert("zimbraMtaEnableSmtpdPolicyd".into(), vec!["FALSE".into()]);
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn explain(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn latest_report(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir.join("latest"))
        .unwrap()
        .join("report.json")
}

/// Slack-style secret path: it must appear in no output of the tool.
const SECRET_PATH: &str = "/services/T0001/B0001/s3cr3tT0k3n";

/// No drift: no message, but the metrics are pushed (the same text `--metrics-file`
/// writes). New drift: one JSON message with the summary and the drift. The same drift
/// again: no message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_announces_new_drift_and_the_pushgateway_gets_every_run() {
    let sim = Sim::start(Posture::Compliant).await;
    let hook = Receiver::start(200);
    let gateway = Receiver::start(200);
    let (metrics, log) = (sim.path("fleet.prom"), sim.path("audit.jsonl"));
    let webhook_file = sim.path("webhook-url");
    std::fs::write(&webhook_file, format!("{}\n", hook.url(SECRET_PATH))).unwrap();
    let args = [
        "--webhook-file",
        webhook_file.to_str().unwrap(),
        "--pushgateway",
        &gateway.url("/"),
        "--metrics-file",
        metrics.to_str().unwrap(),
        "--log-file",
        log.to_str().unwrap(),
        "-v",
    ];
    let o = sim.check("reports", &args).await;
    assert_eq!(code(&o), ExitCode::Ok.code(), "{}", explain(&o));
    assert!(hook.received().is_empty(), "no drift, no message");
    let pushed = gateway.received();
    assert_eq!(pushed.len(), 1, "{pushed:?}");
    assert_eq!(pushed[0].method, "PUT");
    assert_eq!(
        pushed[0].path,
        "/metrics/job/carbonio-fleet/instance/inventory"
    );
    assert!(
        pushed[0]
            .content_type
            .starts_with("text/plain; version=0.0.4"),
        "{}",
        pushed[0].content_type
    );
    assert_eq!(
        String::from_utf8(pushed[0].body.clone()).unwrap(),
        std::fs::read_to_string(&metrics).unwrap(),
        "the pushed text is what --metrics-file wrote"
    );

    sim.drift();
    let o = sim.check("reports", &args).await;
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    let posted = hook.received();
    assert_eq!(posted.len(), 1, "{posted:?}");
    let req = &posted[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, SECRET_PATH);
    assert_eq!(req.content_type, "application/json");
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["command"], "check");
    assert_eq!(body["exit_code"], ExitCode::Drift.code());
    assert_eq!(body["summary"]["drift"], 1);
    assert_eq!(body["new_drift"][0]["host"], "d1");
    assert_eq!(body["new_drift"][0]["was"], "compliant");
    assert_eq!(body["new_drift"][0]["now"], "drift");
    let checks = body["new_drift"][0]["checks"].as_array().unwrap();
    assert!(
        checks
            .iter()
            .any(|c| c == "BS-01 compliant → non-compliant"),
        "{checks:?}"
    );
    let report = latest_report(&sim.path("reports"));
    assert_eq!(body["report"], report.display().to_string());
    let text = body["text"].as_str().unwrap();
    assert!(
        text.starts_with(
            "carbonio-fleet check (backscatter-hardening): new drift on 1 of 1 hosts;"
        ),
        "{text}"
    );
    assert!(
        text.contains("\n• d1: compliant → drift (BS-01 compliant → non-compliant"),
        "{text}"
    );
    assert_eq!(gateway.received().len(), 1, "every run pushes");

    let o = sim.check("reports", &args).await;
    assert_eq!(code(&o), ExitCode::Drift.code());
    assert!(
        hook.received().is_empty(),
        "the same drift again is not new"
    );

    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!("pushed to http://{}/…", gateway.addr)),
        "the verbose log names the gateway, masked: {stderr}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    for out in [&*String::from_utf8_lossy(&o.stdout), &*stderr, &logged] {
        assert!(!out.contains("s3cr3tT0k3n"), "the secret leaked: {out}");
    }
}

/// A receiver that answers 500 (tried twice) or that is not there: a warning with the URL
/// masked, and the exit code the run earned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_is_a_warning_and_keeps_the_exit_code() {
    let sim = Sim::start(Posture::NonCompliant).await;
    let broken = Receiver::start(500);
    let url = broken.url(SECRET_PATH);
    let o = sim
        .check(
            "first",
            &["--webhook", &url, "--pushgateway", &broken.url("")],
        )
        .await;
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let shown = format!("http://{}/…", broken.addr);
    assert!(
        stderr.contains(&format!(
            "webhook: the new drift could not be delivered: {shown} answered HTTP 500 (the run's exit code is unchanged)"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "pushgateway: the metrics could not be pushed: {shown} answered HTTP 500"
        )),
        "{stderr}"
    );
    let got = broken.received();
    assert_eq!(
        got.iter().filter(|r| r.method == "POST").count(),
        2,
        "one retry after a 5xx: {got:?}"
    );
    assert!(!stderr.contains("s3cr3tT0k3n"), "{stderr}");

    let nobody = format!("http://127.0.0.1:{}", closed_port());
    let o = sim
        .check(
            "second",
            &[
                "--webhook",
                &format!("{nobody}{SECRET_PATH}"),
                "--pushgateway",
                &nobody,
            ],
        )
        .await;
    assert_eq!(code(&o), ExitCode::Drift.code(), "{}", explain(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!(
            "webhook: the new drift could not be delivered: {nobody}/…: "
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("pushgateway: the metrics could not be pushed"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cr3tT0k3n"), "{stderr}");
    assert!(
        latest_report(&sim.path("second")).exists(),
        "the report is written all the same"
    );
}

/// A URL that is not http(s) is a usage error before anything is contacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_webhook_url_is_refused_before_the_run() {
    let sim = Sim::start(Posture::Compliant).await;
    let o = sim
        .check(
            "reports",
            &["--webhook", "hooks.example/services/T/B/s3cr3tT0k3n"],
        )
        .await;
    assert_eq!(code(&o), ExitCode::Usage.code(), "{}", explain(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "carbonio-fleet: --webhook: no scheme: write it as https://host/path; nothing was contacted\n"
    );
    assert!(!sim.path("reports").exists());
}
