//! Shared test support: a real OpenSSH `sshd` harness and an in-process russh server.
//! Each integration suite includes this with `mod support;`; not every suite uses every
//! helper, hence the dead-code allowance.
#![allow(dead_code)]

pub mod child;
pub mod fake;
pub mod realfleet;
pub mod sshd;
pub mod wait;
