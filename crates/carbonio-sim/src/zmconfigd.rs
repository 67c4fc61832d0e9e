//! zmconfigd, as Carbonio's Jython zmconfigd behaves (docs/carbonio.md §3): every
//! `zmconfigd_interval` (60 s on a real node, a fraction of a second in tests) it reads the
//! node's effective LDAP values (the server entry first, then the global config), and
//! when the `mta` section's rendering changed it rewrites the files and turns the
//! section's `RESTART mta` into a reload (`zmmtactl reload norewrite`). On a legacy node
//! that reloads Postfix; on a systemd node `zmmtactl` refuses (it prints the systemd
//! banner), so the files change and the running master does not: a changed master.cf
//! never loads there until someone reloads it.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::node::{Node, Platform};

/// One poll: renders when the effective values changed; `true` when it did.
pub fn poll(node: &Node) -> bool {
    if !node.is_mta() || node.state().is_restarting() {
        return false;
    }
    let before = node.state().postfix.clone();
    let rendered = node.render_candidate();
    if rendered.is_none() || rendered == before {
        return false;
    }
    node.render_postfix();
    if node.state().platform == Platform::Legacy {
        node.reload_master();
    }
    true
}

/// Polls `node` every `interval` until `cancel` fires, counting each poll on the node
/// ([`Node::zmconfigd_polls`]).
pub async fn run(node: Arc<Node>, interval: Duration, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let rendered = poll(&node);
        node.count_zmconfigd_poll(rendered);
    }
}
