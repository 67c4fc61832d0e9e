//! The simulated fleet over real SSH (the project's client, via tests/support/simclient.rs): exact
//! strings and exit codes of the emulated Carbonio programs, SMTP from both vantage
//! points, cluster-shared LDAP, faulty endpoints and restart records.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

#[path = "support/simclient.rs"]
mod simclient;
#[path = "support/wait.rs"]
mod wait;

use std::collections::BTreeMap;
use std::time::Duration;

use carbonio_sim::node::Platform;
use carbonio_sim::{
    Behaviour, Fleet, FleetSpec, NodeHandle, NodeProfile, NodeRole, NodeSpec, Posture, SimError,
    max_concurrent, max_concurrent_per_cluster,
};
use simclient::{ClientError, Output, SimClient, Smtp, quote};
use wait::wait_until;

const T: Duration = Duration::from_secs(60);

/// An MTA of `platform` in `posture`, otherwise the simulator's default node.
fn profile(platform: Platform, posture: Posture) -> NodeProfile {
    NodeProfile {
        platform,
        posture,
        ..NodeProfile::default()
    }
}

fn spec(nodes: &[(&str, &str, NodeProfile)]) -> FleetSpec {
    FleetSpec {
        nodes: nodes
            .iter()
            .map(|(n, c, p)| NodeSpec {
                name: n.to_string(),
                cluster: c.to_string(),
                profile: *p,
                groups: Vec::new(),
            })
            .collect(),
        restart_time: Duration::from_millis(300),
        ..FleetSpec::default()
    }
}

/// Starts the fleet on a random free port range (retrying on bind failures).
async fn start(spec: FleetSpec) -> (Fleet, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..30 {
        let mut s = spec.clone();
        s.port_base = rand::random_range(20000u16..60000);
        match Fleet::start(s, dir.path()).await {
            Ok(f) => return (f, dir),
            Err(SimError::Bind { .. }) => continue,
            Err(e) => panic!("fleet failed to start: {e}"),
        }
    }
    panic!("no free port range found");
}

async fn connect(f: &Fleet, h: &NodeHandle, user: &str) -> Result<SimClient, ClientError> {
    SimClient::connect(h.addr(), &f.known_hosts_path(), &f.identity_path(), user, T).await
}

async fn root(f: &Fleet, name: &str) -> SimClient {
    connect(f, &f.node(name).unwrap(), "root").await.unwrap()
}

/// Runs `script` as zextras the way the tool does as root: `su - zextras -c QUOTED`.
async fn as_zextras(c: &SimClient, script: &str) -> Output {
    c.exec(&format!("su - zextras -c {}", quote(script)))
        .await
        .unwrap()
}

fn out(status: u32, stdout: &str, stderr: &str) -> Output {
    Output {
        status: Some(status),
        stdout: stdout.into(),
        stderr: stderr.into(),
    }
}

#[tokio::test]
async fn prov_single_batch_and_wrapper() {
    let (f, _d) = start(spec(&[(
        "mx1.a.example",
        "a",
        profile(Platform::Legacy, Posture::HalfCompliant),
    )]))
    .await;
    let c = root(&f, "mx1.a.example").await;

    // Wrapper run as root (absolute path: /opt/zextras/bin is not on root's PATH).
    let o = c
        .exec("/opt/zextras/bin/carbonio prov gcf zimbraMtaEnableSmtpdPolicyd")
        .await
        .unwrap();
    assert_eq!(o, out(1, "Please run as zextras user\n", ""));
    let o = c
        .exec("carbonio prov gcf zimbraMtaEnableSmtpdPolicyd")
        .await
        .unwrap();
    assert_eq!(o, out(127, "", "sh: 1: carbonio: not found\n"));

    // Single command through su, canonical name printed.
    let o = as_zextras(&c, "carbonio prov gcf zimbramtaenablesmtpdpolicyd").await;
    assert_eq!(o, out(0, "zimbraMtaEnableSmtpdPolicyd: FALSE\n", ""));

    // Batch from a pipe: prompts glued to the first output line, exit 0 at EOF after an error.
    let batch = "printf '%s\\n' 'gcf zimbraMtaRestriction' 'mcf zimbraMtaEnableSmtpdPolicyd true' 'gcf zimbraMtaSmtpdRejectUnlistedRecipient' | carbonio prov";
    let o = as_zextras(&c, batch).await;
    assert_eq!(
        o,
        out(
            0,
            "prov> zimbraMtaRestriction: reject_invalid_helo_hostname\nzimbraMtaRestriction: reject_non_fqdn_sender\nzimbraMtaRestriction: reject_unknown_sender_domain\nprov> prov> zimbraMtaSmtpdRejectUnlistedRecipient: yes\nprov> ",
            "ERROR: account.INVALID_ATTR_VALUE (zimbraMtaEnableSmtpdPolicyd must be TRUE or FALSE)\n"
        )
    );
    // Ended with `exit`: 2 after an error.
    let o = as_zextras(
        &c,
        "printf '%s\\n' 'mcf zimbraMtaEnableSmtpdPolicyd true' exit | carbonio prov",
    )
    .await;
    assert_eq!(o.status, Some(2));
    assert_eq!(o.stdout, "prov> prov> ");
    // Batch from the channel's stdin, logged in as zextras directly.
    let z = connect(&f, &f.node("mx1.a.example").unwrap(), "zextras")
        .await
        .unwrap();
    let o = z
        .exec_with_stdin(
            "carbonio prov",
            Some(b"gcf zimbraMtaSmtpdRejectUnlistedSender\nexit\n"),
        )
        .await
        .unwrap();
    assert_eq!(
        o,
        out(
            0,
            "prov> zimbraMtaSmtpdRejectUnlistedSender: yes\nprov> ",
            ""
        )
    );
    // One JVM per ProvUtil process; the wrapper refusing root starts none.
    assert_eq!(f.node("mx1.a.example").unwrap().prov_invocations(), 4);
    f.shutdown().await;
}

#[tokio::test]
async fn curly_quote_recipe_gives_the_usage_block() {
    let (f, _d) = start(spec(&[(
        "mx1.a.example",
        "a",
        profile(Platform::Legacy, Posture::NonCompliant),
    )]))
    .await;
    let c = root(&f, "mx1.a.example").await;
    let o = as_zextras(
        &c,
        "carbonio prov mcf +zimbraMtaRestriction “check_policy_service unix:private/policy”",
    )
    .await;
    assert_eq!(
        o,
        out(
            1,
            "usage:  modifyConfig(mcf) attr1 value1 [attr2 value2...]\n\nFor general help, type : zmprov --help\n",
            ""
        )
    );
    // The same value quoted by code is one argument and works.
    let script = format!(
        "carbonio prov mcf +zimbraMtaRestriction {}",
        quote("check_policy_service unix:private/policy")
    );
    assert_eq!(as_zextras(&c, &script).await, out(0, "", ""));
    let o = as_zextras(&c, "carbonio prov mcf zimbraMtaRestriction").await;
    assert_eq!(o.status, Some(1));
    assert_eq!(
        o.stderr,
        "modifyConfig is expecting at least 2 arguments but 1 argument has been provided\n"
    );
    let o = as_zextras(&c, "carbonio prov mcf zimbraNope 1").await;
    assert_eq!(
        o,
        out(
            2,
            "",
            "ERROR: account.INVALID_ATTR_NAME (invalid attr name: zimbraNope)\n"
        )
    );
    let o = as_zextras(&c, "carbonio prov gs -e other.example").await;
    assert_eq!(
        o,
        out(
            2,
            "",
            "ERROR: account.NO_SUCH_SERVER (no such server: other.example)\n"
        )
    );
    f.shutdown().await;
}

const LEGACY_STATUS: &str = "Host mx1.a.example\n\tamavis                  Running\n\tantispam                Running\n\tantivirus               Running\n\tconfig service          Running\n\tmta                     Running\n\topendkim                Running\n\tstats                   Running\n";

#[tokio::test]
async fn zmcontrol_systemctl_and_postconf_follow_restarts() {
    let (f, _d) = start(spec(&[
        (
            "mx1.a.example",
            "a",
            profile(Platform::Legacy, Posture::NonCompliant),
        ),
        (
            "mx2.b.example",
            "b",
            profile(Platform::Systemd, Posture::NonCompliant),
        ),
    ]))
    .await;
    let c = root(&f, "mx1.a.example").await;
    assert_eq!(
        as_zextras(&c, "zmcontrol status").await,
        out(0, LEGACY_STATUS, "")
    );
    assert_eq!(
        as_zextras(&c, "zmcontrol -v").await,
        out(0, "Carbonio Release 24.12.0\n", "")
    );
    assert_eq!(
        c.exec("/opt/zextras/bin/zmcontrol status").await.unwrap(),
        out(255, "", "Run as the zextras user!\n")
    );

    let before = "smtpd_recipient_restrictions = reject_non_fqdn_recipient, permit_sasl_authenticated, permit_mynetworks, reject_unlisted_recipient, reject_invalid_helo_hostname, reject_non_fqdn_sender, permit\nsmtpd_reject_unlisted_recipient = no\nsmtpd_reject_unlisted_sender = no\n";
    let pc = "postconf smtpd_recipient_restrictions smtpd_reject_unlisted_recipient smtpd_reject_unlisted_sender; postconf -M policy/unix";
    assert_eq!(as_zextras(&c, pc).await, out(0, before, ""));
    let apply = format!(
        "printf '%s\\n' {} {} {} | carbonio prov",
        quote(
            "mcf zimbraMtaEnableSmtpdPolicyd TRUE zimbraMtaSmtpdRejectUnlistedRecipient yes zimbraMtaSmtpdRejectUnlistedSender yes"
        ),
        quote("mcf +zimbraMtaRestriction 'check_policy_service unix:private/policy'"),
        "exit"
    );
    assert_eq!(
        as_zextras(&c, &apply).await,
        out(0, "prov> prov> prov> ", "")
    );
    // LDAP changed, Postfix did not: restart pending.
    assert_eq!(as_zextras(&c, pc).await, out(0, before, ""));
    let o = c
        .exec("postconf -h smtpd_reject_unlisted_recipient nosuch_param")
        .await
        .unwrap();
    assert_eq!(o, out(127, "", "sh: 1: postconf: not found\n"));
    let o = c
        .exec("/opt/zextras/bin/postconf -h smtpd_reject_unlisted_recipient nosuch_param")
        .await
        .unwrap();
    assert_eq!(
        o,
        out(
            0,
            "no\n",
            "postconf: warning: nosuch_param: unknown parameter\n"
        )
    );

    let restart = as_zextras(&c, "zmcontrol restart").await;
    assert_eq!(
        restart,
        out(
            0,
            "Host mx1.a.example\n\tStopping config service...Done.\n\tStopping stats...Done.\n\tStopping mta...Done.\n\tStopping opendkim...Done.\n\tStopping amavis...Done.\n\tStopping antivirus...Done.\n\tStopping antispam...Done.\nHost mx1.a.example\n\tStarting config service...Done.\n\tStarting amavis...Done.\n\tStarting antispam...Done.\n\tStarting antivirus...Done.\n\tStarting opendkim...Done.\n\tStarting mta...Done.\n\tStarting stats...Done.\n",
            ""
        )
    );
    assert_eq!(
        as_zextras(&c, pc).await,
        out(
            0,
            "smtpd_recipient_restrictions = reject_non_fqdn_recipient, permit_sasl_authenticated, permit_mynetworks, reject_unlisted_recipient, reject_invalid_helo_hostname, reject_non_fqdn_sender, check_policy_service unix:private/policy, permit\nsmtpd_reject_unlisted_recipient = yes\nsmtpd_reject_unlisted_sender = yes\npolicy     unix  -       n       n       -       0       spawn user=zimbra argv=/usr/bin/perl /opt/zextras/libexec/zmpostfixpolicyd\n",
            ""
        )
    );

    // A restart told to fail: MTA stays stopped, status exits 1.
    f.node("mx1.a.example").unwrap().set_fail_next_restart(true);
    let o = as_zextras(&c, "zmcontrol restart").await;
    assert_eq!(o.status, Some(1));
    assert!(
        o.stdout.contains("\tStarting mta...Failed.\n"),
        "{}",
        o.stdout
    );
    let o = as_zextras(&c, "zmcontrol status").await;
    assert_eq!(o.status, Some(1));
    assert!(o.stdout.contains("\tmta                     Stopped\n"));

    // systemd node: banner, systemctl.
    let s = root(&f, "mx2.b.example").await;
    let banner = "Services are now handled by systemd.\n\nEnabled systemd targets:\n\n  - carbonio-mta.target\n\nPlease check the documentation for further details.\nExiting.\n";
    assert_eq!(
        as_zextras(&s, "zmcontrol restart").await,
        out(1, banner, "")
    );
    assert_eq!(
        as_zextras(&s, "zmcontrol -v").await,
        out(0, "Carbonio Release 25.6.0\n", "")
    );
    let o = as_zextras(&s, "systemctl is-enabled carbonio-directory-server.target carbonio-appserver.target carbonio-proxy.target carbonio-mta.target 2>&1").await;
    assert_eq!(o, out(0, "disabled\ndisabled\ndisabled\nenabled\n", ""));
    let o = as_zextras(&s, "systemctl restart carbonio-mta.target").await;
    assert_eq!(
        o,
        out(
            1,
            "",
            "Failed to restart carbonio-mta.target: Access denied\n"
        )
    );
    assert_eq!(
        as_zextras(
            &s,
            "sudo -n -- /bin/bash -c 'systemctl restart carbonio-mta.target'"
        )
        .await,
        out(1, "", "sudo: a password is required\n")
    );
    assert_eq!(
        s.exec("systemctl restart carbonio-mta.target && systemctl is-active carbonio-mta.target")
            .await
            .unwrap(),
        out(0, "active\n", "")
    );
    let o = c
        .exec("systemctl is-enabled carbonio-mta.target")
        .await
        .unwrap();
    assert_eq!(o, out(1, "disabled\n", ""));
    f.shutdown().await;
}

#[tokio::test]
async fn gather_script_from_the_contract_runs() {
    let mut p = profile(Platform::Systemd, Posture::Compliant);
    p.spawn_user_missing = true;
    let (f, _d) = start(spec(&[("mx1.a.example", "a", p)])).await;
    let c = root(&f, "mx1.a.example").await;
    let gather = r##"echo '#cfleet platform'; systemctl is-enabled carbonio-directory-server.target carbonio-appserver.target carbonio-proxy.target carbonio-mta.target 2>&1; echo "#cfleet rc $?"
echo '#cfleet version'; zmcontrol -v 2>&1; echo "#cfleet rc $?"
h=$(zmhostname); echo '#cfleet hostname'; echo "$h"; echo "#cfleet rc $?"
echo '#cfleet master'; postconf -M policy/unix 2>&1; echo "#cfleet rc $?"
echo '#cfleet master-template'; grep -F -A3 -e policy /opt/zextras/common/conf/master.cf.in 2>&1; echo "#cfleet rc $?"
echo '#cfleet passwd'; getent passwd zimbra 2>&1; echo "#cfleet rc $?"
echo '#cfleet prov'; printf '%s\n' 'gcf zimbraMtaEnableSmtpdPolicyd' "gs -e $h zimbraMtaSmtpdRejectUnlistedRecipient" "gs $h zimbraServiceEnabled" 'exit' | zmprov -l; echo "#cfleet rc $?""##;
    let o = as_zextras(&c, gather).await;
    let expected = "#cfleet platform\ndisabled\ndisabled\ndisabled\nenabled\n#cfleet rc 0\n\
#cfleet version\nCarbonio Release 25.6.0\n#cfleet rc 0\n\
#cfleet hostname\nmx1.a.example\n#cfleet rc 0\n\
#cfleet master\npolicy     unix  -       n       n       -       0       spawn user=zimbra argv=/usr/bin/perl /opt/zextras/libexec/zmpostfixpolicyd\n#cfleet rc 0\n\
#cfleet master-template\n%%uncomment VAR:zimbraMtaEnableSmtpdPolicyd%%policy    unix  -       n       n       -       0       spawn\n\
%%uncomment VAR:zimbraMtaEnableSmtpdPolicyd%%\tuser=zimbra argv=/usr/bin/perl /opt/zextras/libexec/zmpostfixpolicyd\n\
#\n# ====================================================================\n# Interfaces to non-Postfix software. Be sure to examine the manual\n#cfleet rc 0\n\
#cfleet passwd\n#cfleet rc 2\n\
#cfleet prov\nprov> zimbraMtaEnableSmtpdPolicyd: TRUE\nprov> # name mx1.a.example\n\nprov> # name mx1.a.example\nzimbraServiceEnabled: amavis\nzimbraServiceEnabled: antispam\nzimbraServiceEnabled: antivirus\nzimbraServiceEnabled: mta\nzimbraServiceEnabled: opendkim\nzimbraServiceEnabled: stats\nzimbraServiceEnabled: zmconfigd\n\nprov> #cfleet rc 0\n";
    assert_eq!(o, out(0, expected, ""));
    f.shutdown().await;
}

async fn rcpt(
    stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite,
    to: &str,
) -> (String, String) {
    let mut s = Smtp::new(stream);
    let greeting = s.reply().await.unwrap();
    if !greeting.starts_with("220") {
        return (greeting, String::new());
    }
    let ehlo = s.cmd("EHLO probe.example").await.unwrap();
    assert!(ehlo.ends_with("250 DSN"), "{ehlo}");
    assert_eq!(s.cmd("MAIL FROM:<>").await.unwrap(), "250 2.1.0 Ok");
    let r = s.cmd(&format!("RCPT TO:<{to}>")).await.unwrap();
    assert_eq!(s.cmd("QUIT").await.unwrap(), "221 2.0.0 Bye");
    (greeting, r)
}

#[tokio::test]
async fn smtp_from_both_vantage_points_and_during_restart() {
    let mut broken = profile(Platform::Legacy, Posture::Compliant);
    broken.spawn_user_missing = true;
    let mut s = spec(&[
        ("mx1.a.example", "a", broken),
        (
            "mx2.b.example",
            "b",
            profile(Platform::Legacy, Posture::NonCompliant),
        ),
    ]);
    s.smtp_outside = true;
    let (f, _d) = start(s).await;
    let unknown_a = "nobody@a.example";
    let known_a = "user1@a.example";

    // Non-compliant node: reject unlisted = no, loopback client accepted for an unknown user.
    let c2 = root(&f, "mx2.b.example").await;
    let (g, r) = rcpt(
        c2.tunnel("127.0.0.1", 25).await.unwrap(),
        "nobody@b.example",
    )
    .await;
    assert_eq!(g, "220 mx2.b.example ESMTP Postfix");
    assert_eq!(r, "250 2.1.5 Ok");

    // Broken policy service: loopback is permitted before the policy service is asked.
    let h = f.node("mx1.a.example").unwrap();
    let c = root(&f, "mx1.a.example").await;
    assert_eq!(
        rcpt(c.tunnel("localhost", 25).await.unwrap(), unknown_a)
            .await
            .1,
        "550 5.1.1 <nobody@a.example>: Recipient address rejected: User unknown in virtual mailbox table"
    );
    assert_eq!(
        rcpt(c.tunnel("127.0.0.1", 25).await.unwrap(), known_a)
            .await
            .1,
        "250 2.1.5 Ok"
    );
    // Nothing asked the policy service: the log holds only the master's start and
    // smtpd's `connect from` for each session (through the tunnel: from the node itself).
    assert!(
        h.mail_log().lines().all(|l| (l.contains("postfix/master[")
            && l.ends_with(
                "daemon started -- version 3.7.11, configuration /opt/zextras/common/conf"
            ))
            || (l.contains("postfix/smtpd[")
                && l.ends_with(": connect from localhost[127.0.0.1]"))),
        "{}",
        h.mail_log()
    );
    assert!(h.mail_log().contains("connect from localhost[127.0.0.1]"));
    // From outside: unknown users are still rejected first; known ones hit the policy service.
    let outside = h.smtp_outside_addr().unwrap();
    let (_, r) = rcpt(
        tokio::net::TcpStream::connect(outside).await.unwrap(),
        unknown_a,
    )
    .await;
    assert!(r.starts_with("550 5.1.1"), "{r}");
    let (_, r) = rcpt(
        tokio::net::TcpStream::connect(outside).await.unwrap(),
        known_a,
    )
    .await;
    assert_eq!(r, "451 4.3.5 Server configuration problem");
    let log = h.mail_log();
    assert!(
        log.contains("postfix/spawn[") && log.contains("]: fatal: unknown user name: zimbra"),
        "{log}"
    );
    assert!(
        log.contains("warning: problem talking to server private/policy"),
        "{log}"
    );
    let o = c
        .exec("grep -F 'unknown user name' /var/log/carbonio.log >/dev/null; echo $?")
        .await
        .unwrap();
    assert_eq!(o.stdout, "0\n");

    // Only port 25 on the node itself is served.
    assert!(c.tunnel("127.0.0.1", 26).await.is_err());

    // During a restart: 421. The restart stays down until the test releases it.
    let hold = h.node().hold_restarts();
    let restarting = {
        let c = root(&f, "mx1.a.example").await;
        tokio::spawn(async move { as_zextras(&c, "zmcontrol restart").await })
    };
    wait_until("mx1 restarting", || h.snapshot().state.is_restarting()).await;
    let (g, _) = rcpt(c.tunnel("127.0.0.1", 25).await.unwrap(), known_a).await;
    assert_eq!(g, "421 4.3.2 Service not available");
    assert_eq!(as_zextras(&c, "zmcontrol status").await.status, Some(1));
    hold.release();
    assert_eq!(restarting.await.unwrap().status, Some(0));
    assert_eq!(
        rcpt(c.tunnel("127.0.0.1", 25).await.unwrap(), known_a)
            .await
            .1,
        "250 2.1.5 Ok"
    );
    f.shutdown().await;
}

#[tokio::test]
async fn cluster_nodes_share_global_config_not_server_entries() {
    let (f, _d) = start(spec(&[
        (
            "mx1.a.example",
            "a",
            profile(Platform::Legacy, Posture::NonCompliant),
        ),
        (
            "mx2.a.example",
            "a",
            profile(Platform::Systemd, Posture::NonCompliant),
        ),
        (
            "mx3.b.example",
            "b",
            profile(Platform::Legacy, Posture::NonCompliant),
        ),
    ]))
    .await;
    let a1 = root(&f, "mx1.a.example").await;
    let a2 = root(&f, "mx2.a.example").await;
    let b = root(&f, "mx3.b.example").await;
    assert_eq!(as_zextras(&a1, "carbonio prov mcf zimbraMtaEnableSmtpdPolicyd TRUE && carbonio prov ms mx1.a.example zimbraMtaSmtpdRejectUnlistedRecipient yes").await.status, Some(0));
    assert_eq!(
        as_zextras(&a2, "carbonio prov gcf zimbraMtaEnableSmtpdPolicyd")
            .await
            .stdout,
        "zimbraMtaEnableSmtpdPolicyd: TRUE\n"
    );
    assert_eq!(
        as_zextras(&b, "carbonio prov gcf zimbraMtaEnableSmtpdPolicyd")
            .await
            .stdout,
        "zimbraMtaEnableSmtpdPolicyd: FALSE\n"
    );
    assert_eq!(
        as_zextras(&a2, "carbonio prov gs -e mx1.a.example zimbraMtaSmtpdRejectUnlistedRecipient; carbonio prov gs -e mx2.a.example zimbraMtaSmtpdRejectUnlistedRecipient").await.stdout,
        "# name mx1.a.example\nzimbraMtaSmtpdRejectUnlistedRecipient: yes\n\n# name mx2.a.example\n\n"
    );
    assert_eq!(
        as_zextras(&a2, "carbonio prov gas mta").await.stdout,
        "mx1.a.example\nmx2.a.example\n"
    );
    // Every cluster hosts a primary and an alias domain (sim::dns), listed in LDAP's
    // order (not sorted); the alias domain's entry carries its catch-all, and a search
    // for catch-all accounts finds none here.
    assert_eq!(
        as_zextras(&a2, "carbonio prov gad").await.stdout,
        "a-alias.example\na.example\n"
    );
    assert_eq!(
        as_zextras(
            &a2,
            "zmprov -l gad -v zimbraDomainType zimbraMailCatchAllAddress"
        )
        .await
        .stdout,
        "# name a-alias.example\nzimbraDomainType: alias\nzimbraMailCatchAllAddress: @a-alias.example\n\n# name a.example\nzimbraDomainType: local\n\n"
    );
    assert_eq!(
        as_zextras(&a2, "zmprov -l sa -v '(zimbraMailCatchAllAddress=*)'")
            .await
            .stdout,
        ""
    );
    // A non-compliant cluster has no DKIM key in LDAP (the dns_posture sweep reads the
    // keys of compliant clusters with `-l`).
    assert_eq!(
        as_zextras(
            &a2,
            "carbonio prov -l gd a-alias.example zimbraDomainType DKIMSelector"
        )
        .await
        .stdout,
        "# name a-alias.example\nzimbraDomainType: alias\n\n"
    );

    let missing = as_zextras(&a2, "carbonio prov gd nope.example").await;
    assert_eq!(missing.status, Some(2));
    assert_eq!(
        missing.stderr,
        "ERROR: account.NO_SUCH_DOMAIN (no such domain: nope.example)\n"
    );
    f.shutdown().await;
}

#[tokio::test]
async fn faulty_endpoints_behave_like_broken_hosts() {
    let with = |b: Behaviour| NodeProfile {
        behaviour: b,
        ..profile(Platform::Legacy, Posture::NonCompliant)
    };
    let (f, _d) = start(spec(&[
        ("ok.example", "a", with(Behaviour::Normal)),
        ("key.example", "b", with(Behaviour::HostkeyChanged)),
        ("auth.example", "c", with(Behaviour::AuthRefused)),
        ("down.example", "d", with(Behaviour::Unreachable)),
        ("hang.example", "e", with(Behaviour::Hanging)),
    ]))
    .await;
    let n = |name: &str| f.node(name).unwrap();
    assert!(connect(&f, &n("ok.example"), "zextras").await.is_ok());
    assert!(matches!(
        connect(&f, &n("ok.example"), "nobody").await,
        Err(ClientError::AuthRefused)
    ));
    assert!(matches!(
        connect(&f, &n("key.example"), "root").await,
        Err(ClientError::HostKeyMismatch(_))
    ));
    assert!(matches!(
        connect(&f, &n("auth.example"), "root").await,
        Err(ClientError::AuthRefused)
    ));
    let e = connect(&f, &n("down.example"), "root").await.err().unwrap();
    assert!(matches!(&e, ClientError::Unreachable(_)), "{e:?}");
    let e = SimClient::connect(
        n("hang.example").addr(),
        &f.known_hosts_path(),
        &f.identity_path(),
        "root",
        Duration::from_millis(500),
    )
    .await;
    assert!(matches!(e, Err(ClientError::Timeout)));

    // The files a client needs.
    let inv: toml::Table = std::fs::read_to_string(f.inventory_path())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(inv["defaults"]["user"].as_str(), Some("root"));
    assert_eq!(inv["defaults"]["host_key_policy"].as_str(), Some("strict"));
    assert_eq!(
        inv["defaults"]["identity_files"][0].as_str(),
        Some(f.identity_path().to_str().unwrap())
    );
    let hosts = inv["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 5);
    assert_eq!(hosts[1]["name"].as_str(), Some("key.example"));
    assert_eq!(
        hosts[1]["port"].as_integer(),
        Some(i64::from(n("key.example").addr().port()))
    );
    let kh = std::fs::read_to_string(f.known_hosts_path()).unwrap();
    assert!(
        kh.lines()
            .all(|l| l.starts_with("[127.0.0.1]:") && l.contains(" ssh-ed25519 ")),
        "{kh}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(f.identity_path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    f.shutdown().await;
}

#[tokio::test]
async fn restart_records_show_overlap_per_cluster() {
    let sd = profile(Platform::Systemd, Posture::NonCompliant);
    let (f, _d) = start(spec(&[
        ("a1.example", "a", sd),
        ("a2.example", "a", sd),
        ("b1.example", "b", sd),
    ]))
    .await;
    // All three restarts are held down until each node is seen restarting: the overlap
    // is a fact the test waits for, not a coincidence of timers.
    let names = ["a1.example", "a2.example", "b1.example"];
    let holds: Vec<_> = names
        .iter()
        .map(|n| f.node(n).unwrap().node().hold_restarts())
        .collect();
    let mut tasks = Vec::new();
    for name in names {
        let c = root(&f, name).await;
        tasks.push(tokio::spawn(async move {
            c.exec("systemctl restart carbonio-mta.target")
                .await
                .unwrap()
        }));
    }
    wait_until("all three restarting", || {
        names
            .iter()
            .all(|n| f.node(n).unwrap().snapshot().state.is_restarting())
    })
    .await;
    drop(holds);
    for t in tasks {
        assert_eq!(t.await.unwrap(), out(0, "", ""));
    }
    let log = f.restart_log();
    assert_eq!(log.len(), 3);
    assert!(
        log.iter()
            .all(|r| r.ok && r.duration() >= Duration::from_millis(300))
    );
    assert_eq!(max_concurrent(&log), 3);
    let per: BTreeMap<String, usize> = max_concurrent_per_cluster(&log);
    assert_eq!(per["a"], 2);
    assert_eq!(per["b"], 1);
    // Sequential restarts do not overlap.
    let c = root(&f, "b1.example").await;
    c.exec("systemctl restart carbonio-mta.target")
        .await
        .unwrap();
    let log = f.restart_log();
    let b: Vec<_> = log.iter().filter(|r| r.cluster == "b").cloned().collect();
    assert_eq!(b.len(), 2);
    assert_eq!(max_concurrent(&b), 1);
    f.shutdown().await;
}

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Manual scale check (`cargo test --test sim_fleet -- --ignored --nocapture`): 1000
/// nodes start, every one answers a prov read over SSH; prints timings and RSS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "manual scale check"]
async fn thousand_nodes_scale_check() {
    let spec = FleetSpec::from_mix(
        1000,
        "compliant=300,half-compliant=300,legacy+mailbox=50",
        3,
    )
    .unwrap();
    let rss0 = rss_kib("VmRSS:");
    let t0 = tokio::time::Instant::now();
    let (f, _d) = start(spec).await;
    let up = t0.elapsed();
    let rss_up = rss_kib("VmRSS:");
    let t1 = tokio::time::Instant::now();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(200));
    let mut tasks = Vec::new();
    for h in f.nodes().to_vec() {
        let (kh, id) = (f.known_hosts_path(), f.identity_path());
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            let c = SimClient::connect(h.addr(), &kh, &id, "root", Duration::from_secs(60))
                .await
                .unwrap();
            let o = as_zextras(&c, "carbonio prov gcf zimbraMtaEnableSmtpdPolicyd").await;
            assert_eq!(o.status, Some(0));
            c
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.unwrap());
    }
    let swept = t1.elapsed();
    let rss_open = rss_kib("VmRSS:");
    eprintln!(
        "1000 nodes: up in {up:.2?} (RSS {} -> {} MiB); 1000 connect+auth+exec in {swept:.2?}; RSS with 1000 sessions open (client and server in one process) {} MiB, peak {} MiB",
        rss0 / 1024,
        rss_up / 1024,
        rss_open / 1024,
        rss_kib("VmHWM:") / 1024
    );
    drop(clients);
    f.shutdown().await;
}

/// Manual scale check against a fleet in another process (`SIM_DIR` = its directory,
/// e.g. from `carbonio-fleet simulate --nodes 1000 --dir DIR`): every node answers a prov
/// read over SSH; sessions stay open until the end so the simulator's RSS can be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "manual scale check against an external simulator"]
async fn external_fleet_sweep() {
    let dir = std::path::PathBuf::from(std::env::var("SIM_DIR").expect("SIM_DIR"));
    let inv: toml::Table = std::fs::read_to_string(dir.join("inventory.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let addrs: Vec<std::net::SocketAddr> = inv["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            format!(
                "{}:{}",
                h["address"].as_str().unwrap(),
                h["port"].as_integer().unwrap()
            )
            .parse()
            .unwrap()
        })
        .collect();
    let t1 = tokio::time::Instant::now();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(200));
    let mut tasks = Vec::new();
    for addr in addrs {
        let (kh, id) = (dir.join("known_hosts"), dir.join("id_ed25519"));
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            let c = SimClient::connect(addr, &kh, &id, "root", Duration::from_secs(60))
                .await
                .unwrap();
            let o = as_zextras(&c, "carbonio prov gcf zimbraMtaEnableSmtpdPolicyd").await;
            assert_eq!(o.status, Some(0));
            c
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.unwrap());
    }
    eprintln!(
        "{} nodes swept in {:.2?}; sessions open, sleeping 5 s for an RSS reading",
        clients.len(),
        t1.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn loopback_ip_addressing_with_outside_smtp_on_port_25() {
    let mut s = spec(&[
        (
            "mx1.a.example",
            "a",
            profile(Platform::Systemd, Posture::Compliant),
        ),
        (
            "mx2.a.example",
            "a",
            NodeProfile {
                role: NodeRole::Mailbox,
                ..profile(Platform::Systemd, Posture::Compliant)
            },
        ),
    ]);
    s.addressing = carbonio_sim::Addressing::LoopbackIps;
    s.smtp_outside = true;
    let (f, _d) = start(s).await;
    let mx = f.node("mx1.a.example").unwrap();
    let mbx = f.node("mx2.a.example").unwrap();
    assert_eq!(mx.addr().ip().to_string(), "127.0.1.1");
    assert_eq!(mbx.addr().ip().to_string(), "127.0.1.2");
    assert_eq!(mx.addr().port(), mbx.addr().port());
    let outside = mx.smtp_outside_addr().unwrap();
    assert_eq!(outside.to_string(), "127.0.1.1:25");
    assert!(mbx.smtp_outside_addr().is_none(), "no MTA, no port 25");
    let (g, r) = rcpt(
        tokio::net::TcpStream::connect(outside).await.unwrap(),
        "relay@elsewhere.example",
    )
    .await;
    assert_eq!(g, "220 mx1.a.example ESMTP Postfix");
    assert_eq!(
        r,
        "554 5.7.1 <relay@elsewhere.example>: Relay access denied"
    );
    // A mailbox-only node has no Postfix: no port 25 through the tunnel, no postconf.
    let c = root(&f, "mx2.a.example").await;
    assert!(c.tunnel("127.0.0.1", 25).await.is_err());
    let o = c
        .exec("/opt/zextras/bin/postconf smtpd_recipient_restrictions")
        .await
        .unwrap();
    assert_eq!(o, out(1, "Error: postfix not installed\n", ""));
    let banner = "Services are now handled by systemd.\n\nEnabled systemd targets:\n\n  - carbonio-appserver.target\n  - carbonio-proxy.target\n\nPlease check the documentation for further details.\nExiting.\n";
    assert_eq!(as_zextras(&c, "zmcontrol status").await, out(1, banner, ""));
    f.shutdown().await;
}

/// A catch-all makes every address of its domain "known" to Postfix: on the alias
/// domain's entry, or on an account of a local domain (docs/carbonio.md §2). An unknown
/// recipient there is accepted even by a node that rejects unlisted recipients, so a
/// probe of such a domain says nothing about backscatter.
#[tokio::test]
async fn catch_all_domains_accept_every_address() {
    let compliant = profile(Platform::Legacy, Posture::Compliant);
    let mut with_account = compliant;
    with_account.catch_all_account = true;
    let (f, _d) = start(spec(&[
        ("mx1.a.example", "a", compliant),
        ("mx1.b.example", "b", with_account),
    ]))
    .await;
    let reply = |node: &'static str, to: &'static str| {
        let f = &f;
        async move {
            let c = root(f, node).await;
            rcpt(c.tunnel("127.0.0.1", 25).await.unwrap(), to).await.1
        }
    };
    assert!(
        reply("mx1.a.example", "nobody-here@a.example")
            .await
            .starts_with("550")
    );
    assert!(
        reply("mx1.a.example", "nobody-here@a-alias.example")
            .await
            .starts_with("250")
    );
    assert!(
        reply("mx1.b.example", "nobody-here@b.example")
            .await
            .starts_with("250")
    );
    let c = root(&f, "mx1.b.example").await;
    assert_eq!(
        as_zextras(&c, "zmprov -l sa -v '(zimbraMailCatchAllAddress=*)'")
            .await
            .stdout,
        "# name catchall@b.example\nmail: catchall@b.example\nzimbraMailCatchAllAddress: @b.example\n\n"
    );
    f.shutdown().await;
}

/// zmconfigd applies a global change by itself (docs/carbonio.md §3): an out-of-band `mcf`
/// that enables the policy daemon and adds its restriction reaches every MTA's files
/// within two polls, with no apply and no restart. On the legacy node zmconfigd reloads
/// Postfix, so the policy entry is loaded; on the systemd node its reload is refused: the
/// files have the entry, the running master does not, and a known recipient from outside
/// mynetworks gets `451 4.3.5` (the restriction is in main.cf, the socket is missing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zmconfigd_spreads_a_global_change_and_systemd_nodes_do_not_reload() {
    let fixed = |platform| NodeProfile {
        spawn_user_fixed: true,
        ..profile(platform, Posture::HalfCompliant)
    };
    let mut s = spec(&[
        ("zl.c.example", "c", fixed(Platform::Legacy)),
        ("zs.c.example", "c", fixed(Platform::Systemd)),
    ]);
    s.smtp_outside = true;
    s.zmconfigd_interval = Some(Duration::from_millis(100));
    let (f, _d) = start(s).await;
    let c = as_zextras(
        &root(&f, "zl.c.example").await,
        "zmprov -l mcf zimbraMtaEnableSmtpdPolicyd TRUE +zimbraMtaRestriction 'check_policy_service unix:private/policy'",
    )
    .await;
    assert_eq!(c.status, Some(0), "{c:?}");
    let polls_at_change: Vec<u64> = ["zl.c.example", "zs.c.example"]
        .iter()
        .map(|n| f.node(n).unwrap().node().zmconfigd_polls())
        .collect();
    for n in ["zl.c.example", "zs.c.example"] {
        let node = f.node(n).unwrap().node().clone();
        wait_until(&format!("{n}'s files have the policy entry"), || {
            node.state()
                .postfix
                .as_ref()
                .is_some_and(|pf| pf.policy_spawn_user().is_some())
        })
        .await;
    }
    // Counted in polls, not time: the poll that rewrote the files is at most the second
    // after the change.
    for (i, n) in ["zl.c.example", "zs.c.example"].iter().enumerate() {
        let at = f.node(n).unwrap().node().zmconfigd_rendered_at();
        assert!(
            at <= polls_at_change[i] + 2,
            "{n}: rendered at poll {at}, the change came after poll {}",
            polls_at_change[i]
        );
    }
    assert!(f.restart_log().is_empty(), "nobody restarted anything");
    let legacy = f.node("zl.c.example").unwrap();
    assert_eq!(
        legacy.node().loaded_policy_spawn_user().as_deref(),
        Some("zextras"),
        "legacy: zmconfigd reloaded Postfix"
    );
    assert!(legacy.mail_log().contains(": reload -- version"));
    let systemd = f.node("zs.c.example").unwrap();
    assert_eq!(
        systemd.node().loaded_policy_spawn_user(),
        None,
        "systemd: the reload was refused, the running master has no policy entry"
    );
    let known = "user1@c.example";
    let (_, r) = rcpt(
        tokio::net::TcpStream::connect(systemd.smtp_outside_addr().unwrap())
            .await
            .unwrap(),
        known,
    )
    .await;
    assert_eq!(r, "451 4.3.5 Server configuration problem");
    let (_, r) = rcpt(
        tokio::net::TcpStream::connect(legacy.smtp_outside_addr().unwrap())
            .await
            .unwrap(),
        known,
    )
    .await;
    assert_eq!(r, "250 2.1.5 Ok");
}

/// The simulator's model of each product (`carbonio_sim::flavour`) and the tool's
/// (`flavour`) are written apart, from the products' sources, so that neither
/// agrees with the other by construction; they must name the same user and paths.
#[test]
fn the_simulated_products_keep_things_where_the_tool_looks() {
    use carbonio_fleet::flavour::Flavour as Tool;
    use carbonio_sim::flavour::Flavour as Sim;

    for (sim, tool) in [(Sim::Carbonio, Tool::Carbonio), (Sim::Zimbra, Tool::Zimbra)] {
        assert_eq!(
            [
                sim.as_str(),
                sim.product(),
                sim.user(),
                sim.home(),
                sim.localconfig(),
                sim.master_template(),
                sim.master_cf(),
                sim.mail_log(),
                sim.policyd(),
                sim.version_file(),
            ],
            [
                tool.as_str(),
                tool.product(),
                tool.user(),
                tool.home(),
                tool.localconfig(),
                tool.master_template(),
                tool.master_cf(),
                tool.mail_log(),
                tool.policyd(),
                tool.version_file(),
            ]
        );
    }
    assert_eq!(Sim::ALL.len(), Tool::ALL.len());
}
