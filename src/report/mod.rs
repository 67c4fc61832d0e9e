//! Reports: the `report.json` model ([`model`]) and the files rendered from it — JUnit
//! XML, a self-contained HTML page, OpenMetrics text — plus drift between two runs and
//! merging of shard reports. The terminal summary is `ui::summary`'s. Renderers are pure
//! functions of a [`model::Report`]; only [`store`] and [`write_formats`] touch the disk.

pub mod aggregate;
pub mod diff;
pub mod html;
pub mod junit;
mod labels;
pub mod merge;
pub mod metrics;
pub mod model;
#[doc(hidden)]
pub mod sample;
pub mod store;
pub mod write;

pub use write::{WriteError, write_formats};
