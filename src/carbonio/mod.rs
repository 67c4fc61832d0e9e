//! Knowledge of Carbonio nodes: the exact remote commands the tool runs on them and the
//! parsers for what those commands print. Pure functions only; the SSH session that
//! carries the commands lives in `ssh`, the decisions about what the output means for
//! compliance live in `engine`.

pub mod domains;
pub mod gather;
pub mod platform;
pub mod postfix;
pub mod prov;
pub mod running;
pub mod services;
pub mod values;
