//! Reports: the `report.json` model and everything rendered from it — JUnit XML, a
//! self-contained HTML page, OpenMetrics text — plus drift between two runs and merging
//! of shard reports. Renderers are pure functions of a [`model::Report`]; only
//! [`write_formats`] touches the disk.

pub mod diff;
pub mod html;
pub mod junit;
mod labels;
pub mod merge;
pub mod metrics;
pub mod model;
#[doc(hidden)]
pub mod sample;
mod write;

pub use write::{WriteError, write_formats};
