//! OCI images for Sandpit: pulling from registries ([`Puller`]), unpacking
//! layers safely ([`unpack`]) and the content-addressed [`LayerStore`] whose
//! directories every sandbox of an image shares as overlay lower layers.
//!
//! Architecture invariant: nothing here follows a symlink found in a layer,
//! and no layer entry is written outside its layer directory.

#![forbid(unsafe_code)]

pub mod config;
pub mod gc;
pub mod pack;
pub mod pull;
pub mod stats;
pub mod store;
pub mod unpack;

pub use config::ImageConfig;
pub use gc::{GcOptions, GcReport};
pub use pull::{registry_of, Credentials, PullError, Puller, PullerConfig};
pub use store::{ImageRecord, LayerStore, StoreError};
