//! Admin: garbage collection of the server's layer store.

use crate::{Client, ClientError, ADMIN};

impl Client {
    /// Admin: garbage-collect the server's layer store now (`dry_run`:
    /// report what would be removed). The answer is the server's report
    /// (`sandpit_images::GcReport` as JSON).
    pub async fn collect_garbage(&self, dry_run: bool) -> Result<serde_json::Value, ClientError> {
        let path = format!("{ADMIN}/gc?dry_run={dry_run}");
        self.request::<(), _>(http::Method::POST, &path, None).await
    }
}
