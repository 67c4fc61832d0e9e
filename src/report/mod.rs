//! Reports: the `report.json` model ([`model`]) and everything rendered from it — the
//! terminal summary, JUnit XML, a self-contained HTML page, OpenMetrics text — plus drift
//! between two runs and merging of shard reports. Renderers are pure functions of a
//! [`model::Report`]; only [`store`] and [`write_formats`] touch the disk.

pub mod aggregate;
pub mod diff;
pub mod html;
pub mod junit;
mod labels;
pub mod merge;
pub mod metrics;
pub mod model;
pub mod plan_diff;
#[doc(hidden)]
pub mod sample;
pub mod store;
pub mod summary;
pub mod write;

pub use write::{WriteError, write_formats};
