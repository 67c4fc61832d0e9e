//! Host inventory: TOML files (one file or a directory of `*.toml`) merged into one
//! validated [`Inventory`]. Raw types mirror the file (`raw`); the validated types (`model`)
//! come out of one conversion step (`load`) with defaults < groups < host precedence
//! applied. Selection with `--limit` lives in `limit`. Nothing here opens a connection.

pub mod ansible;
mod limit;
mod load;
mod model;
pub mod raw;
pub mod shard;
pub mod ssh_config;

pub use limit::{LimitError, select};
pub use load::{LoadOptions, load, load_with};
pub use model::{Become, Host, HostKeyPolicy, Inventory, JumpSpec};
pub use shard::Shard;
pub use ssh_config::default_ssh_config;
