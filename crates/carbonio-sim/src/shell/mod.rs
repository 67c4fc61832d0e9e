//! The simulated node's shell: a parser and an interpreter for the remote-shell dialect
//! (docs/remote-shell.md), with `su`/`sudo`/`bash -c` re-entering it as another user.

pub mod interp;
pub mod io;
pub mod parse;
pub mod pattern;

pub use interp::{login_env, run_script};
pub use io::{Io, OutputPort, Sink, Source, Stream};
pub use parse::{SyntaxError, parse};

use std::sync::Arc;

use crate::node::Node;

/// What a script produced when run without SSH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `script` as `user`'s SSH exec would (login environment), with `stdin`, capturing
/// the output. For tests and offline checks.
pub async fn run_captured(node: Arc<Node>, user: &str, script: &str, stdin: &[u8]) -> Captured {
    let (out, out_buf) = Sink::buffer();
    let (err, err_buf) = Sink::buffer();
    let io = Io {
        stdin: Source::bytes(stdin.to_vec()),
        stdout: out,
        stderr: err,
    };
    let env = login_env(&node, user);
    let status = run_script(node, user.to_string(), env, script.to_string(), io).await;
    let text = |b: &std::sync::Mutex<Vec<u8>>| {
        String::from_utf8_lossy(&b.lock().expect("buffer poisoned")).into_owned()
    };
    Captured {
        status,
        stdout: text(&out_buf),
        stderr: text(&err_buf),
    }
}
