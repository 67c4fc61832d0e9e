//! Knowledge of Carbonio nodes.

pub mod platform;
