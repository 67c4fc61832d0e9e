//! The programs a simulated node can run, where they live (PATH lookup is real: the
//! Carbonio tools are in `/opt/zextras/bin`, on zextras's login PATH only), and the
//! dispatcher the shell calls.

mod awk;
mod r#become;
mod coreutils;
mod postconf;
mod prov;
mod restart;
mod systemctl;
mod zmcontrol;

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::node::Node;
use super::shell::Io;
use crate::flavour::Flavour;

pub use prov::parse_line as prov_parse_line;
pub use zmcontrol::{display_name, enabled_targets};

/// A running program's context.
pub struct Proc {
    pub node: Arc<Node>,
    /// The user it runs as.
    pub user: String,
    pub env: HashMap<String, String>,
    pub io: Io,
    /// The name it was invoked by.
    pub argv0: String,
}

/// Which emulated program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    Carbonio,
    Zmprov,
    Zmcontrol,
    Zmhostname,
    PostconfWrapper,
    Postconf,
    Systemctl,
    Hostname,
    Getent,
    Cp,
    Configrewrite,
    Stat,
    Id,
    Whoami,
    Grep,
    Cat,
    Echo,
    Printf,
    True,
    False,
    Su,
    Sudo,
    Bash,
    Sh,
    Postfix,
    Date,
    Uname,
    Ps,
    Head,
    Tail,
    Setsid,
    Rm,
    Perl,
    Awk,
}

/// What starting a program costs on a real Carbonio node, in JVM starts (the node's
/// `jvm_latency` each), through Carbonio's wrappers (docs/carbonio.md §7, carbonio-core-utils
/// prov.sh, java.sh, shutil.sh, localconfig.sh, control.pl): `zmprov` runs `zmjava`,
/// which first runs `zmsetvars` → `zmlocalconfig` (one JVM), then ProvUtil (a second);
/// `zmhostname` is `zmlocalconfig` (one); `zmcontrol` is Perl that calls `zmlocalconfig`
/// (one); `configrewrite` runs `zmsetvars` (one). Everything else (postconf, systemctl, coreutils) starts in milliseconds:
/// [`NATIVE_START`] when a cost model is on (`jvm_latency` > 0).
pub fn jvm_starts(program: Program) -> u32 {
    match program {
        Program::Zmprov | Program::Carbonio => 2,
        Program::Zmhostname | Program::Zmcontrol | Program::Configrewrite => 1,
        _ => 0,
    }
}

/// The start of a native program (Postfix's `postconf`, systemctl) when costs are on.
pub const NATIVE_START: std::time::Duration = std::time::Duration::from_millis(3);

/// Sleeps what starting `program` costs on this node.
async fn pay_start(program: Program, p: &Proc) {
    let jvm = p.node.state().jvm_latency;
    if jvm.is_zero() {
        return;
    }
    let cost = match jvm_starts(program) {
        0 if matches!(
            program,
            Program::Postconf | Program::PostconfWrapper | Program::Postfix | Program::Systemctl
        ) =>
        {
            NATIVE_START
        }
        n => jvm * n,
    };
    if !cost.is_zero() {
        tokio::time::sleep(cost).await;
    }
}

/// A program found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub program: Program,
    /// Its absolute path.
    pub path: String,
}

const TABLE: &[(&str, Program)] = &[
    ("/opt/zextras/bin/carbonio", Program::Carbonio),
    ("/opt/zextras/bin/zmprov", Program::Zmprov),
    ("/opt/zextras/bin/zmcontrol", Program::Zmcontrol),
    ("/opt/zextras/bin/zmhostname", Program::Zmhostname),
    ("/opt/zextras/bin/postconf", Program::PostconfWrapper),
    ("/opt/zextras/common/sbin/postconf", Program::Postconf),
    ("/opt/zextras/common/sbin/postfix", Program::Postfix),
    ("/usr/bin/systemctl", Program::Systemctl),
    ("/usr/bin/hostname", Program::Hostname),
    ("/usr/bin/getent", Program::Getent),
    ("/usr/bin/stat", Program::Stat),
    ("/usr/bin/cp", Program::Cp),
    ("/opt/zextras/libexec/configrewrite", Program::Configrewrite),
    ("/usr/bin/id", Program::Id),
    ("/usr/bin/whoami", Program::Whoami),
    ("/usr/bin/grep", Program::Grep),
    ("/usr/bin/cat", Program::Cat),
    ("/usr/bin/echo", Program::Echo),
    ("/usr/bin/printf", Program::Printf),
    ("/usr/bin/true", Program::True),
    ("/usr/bin/false", Program::False),
    ("/usr/bin/su", Program::Su),
    ("/usr/bin/sudo", Program::Sudo),
    ("/usr/bin/bash", Program::Bash),
    ("/usr/bin/sh", Program::Sh),
    ("/usr/bin/date", Program::Date),
    ("/usr/bin/uname", Program::Uname),
    ("/usr/bin/ps", Program::Ps),
    ("/usr/bin/head", Program::Head),
    ("/usr/bin/tail", Program::Tail),
    ("/usr/bin/setsid", Program::Setsid),
    ("/usr/bin/rm", Program::Rm),
    ("/usr/bin/perl", Program::Perl),
    ("/usr/bin/awk", Program::Awk),
];

/// Debian's merged /usr: `/bin/x` is `/usr/bin/x`, `/sbin` is `/usr/sbin`.
fn canonical(path: &str) -> String {
    if let Some(rest) = path.strip_prefix("/bin/") {
        format!("/usr/bin/{rest}")
    } else if let Some(rest) = path.strip_prefix("/sbin/") {
        format!("/usr/sbin/{rest}")
    } else {
        path.to_string()
    }
}

/// The program at `path` on a node of `flavour`. The table names Carbonio's tree; a
/// Zimbra node has the same tools under /opt/zimbra (zm-core-utils `src/bin`) and no
/// `carbonio` wrapper, and nothing under /opt/zextras.
fn at(path: &str, flavour: Flavour) -> Option<Resolved> {
    let c = canonical(path);
    let key = match flavour {
        Flavour::Carbonio => c,
        Flavour::Zimbra if c.starts_with("/opt/zextras/") => return None,
        Flavour::Zimbra => match c.strip_prefix("/opt/zimbra/") {
            Some(rest) => format!("/opt/zextras/{rest}"),
            None => c,
        },
    };
    TABLE
        .iter()
        .filter(|(_, prog)| !(flavour == Flavour::Zimbra && *prog == Program::Carbonio))
        .find(|(p, _)| *p == key)
        .map(|(_, prog)| Resolved {
            program: *prog,
            path: path.to_string(),
        })
}

/// Finds `name` (a path, or searched in `path_var`) on a node of `flavour`.
pub fn resolve(name: &str, path_var: &str, flavour: Flavour) -> Option<Resolved> {
    if name.contains('/') {
        return at(name, flavour);
    }
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .find_map(|d| at(&format!("{d}/{name}"), flavour))
}

/// Runs a resolved program; returns its exit status.
pub fn run<'a>(r: Resolved, args: Vec<String>, p: &'a mut Proc) -> BoxFuture<'a, i32> {
    Box::pin(async move {
        // bash and dash run the first four without a process; the become path (su, sudo,
        // bash, sh) is not part of a program budget.
        if !matches!(
            r.program,
            Program::Echo
                | Program::Printf
                | Program::True
                | Program::False
                | Program::Su
                | Program::Sudo
                | Program::Bash
                | Program::Sh
        ) {
            let name = r.path.rsplit('/').next().unwrap_or(&r.path);
            p.node.count_start(name);
        }
        pay_start(r.program, p).await;
        match r.program {
            Program::Carbonio => prov::carbonio(args, p).await,
            Program::Zmprov => prov::zmprov(args, p).await,
            Program::Zmcontrol => zmcontrol::zmcontrol(args, p).await,
            Program::Zmhostname | Program::Hostname => coreutils::hostname(args, p).await,
            Program::PostconfWrapper => postconf::postconf(args, p).await,
            Program::Postconf => {
                if p.node.state().postfix.is_none() {
                    p.io.stderr
                        .line(format!("sh: 1: {}: not found", r.path))
                        .await;
                    return 127;
                }
                postconf::postconf(args, p).await
            }
            Program::Systemctl => systemctl::systemctl(args, p).await,
            Program::Getent => coreutils::getent(args, p).await,
            Program::Stat => coreutils::stat(args, p).await,
            Program::Cp => coreutils::cp(args, p).await,
            Program::Configrewrite => zmcontrol::configrewrite(args, p).await,
            Program::Id => coreutils::id(args, p).await,
            Program::Whoami => coreutils::whoami(args, p).await,
            Program::Grep => coreutils::grep(args, p).await,
            Program::Cat => coreutils::cat(args, p).await,
            Program::Echo => coreutils::echo(args, p).await,
            Program::Printf => coreutils::printf(args, p).await,
            Program::Postfix => zmcontrol::postfix(args, p).await,
            Program::Date => coreutils::date(args, p).await,
            Program::Uname => coreutils::uname(args, p).await,
            Program::Ps => coreutils::ps(args, p).await,
            Program::Head => coreutils::head(args, p).await,
            Program::Tail => coreutils::tail(args, p).await,
            Program::Setsid => coreutils::setsid(args, p).await,
            Program::Rm => coreutils::rm(args, p).await,
            Program::Perl => coreutils::perl(args, p).await,
            Program::Awk => awk::awk(args, p).await,
            Program::True => 0,
            Program::False => 1,
            Program::Su => r#become::su(args, p).await,
            Program::Sudo => r#become::sudo(args, p).await,
            Program::Bash | Program::Sh => r#become::shell(args, p).await,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/carbonio.md §7: what each wrapper starts.
    #[test]
    fn start_costs_follow_carbonio_wrappers() {
        assert_eq!(jvm_starts(Program::Zmprov), 2);
        assert_eq!(jvm_starts(Program::Carbonio), 2);
        assert_eq!(jvm_starts(Program::Zmhostname), 1);
        assert_eq!(jvm_starts(Program::Zmcontrol), 1);
        for native in [
            Program::Postconf,
            Program::Systemctl,
            Program::Grep,
            Program::Stat,
        ] {
            assert_eq!(jvm_starts(native), 0);
        }
    }
}
