//! What the layer store's garbage collector must keep: every image a
//! snapshot, a template or a sandbox (in any status) refers to.

use std::collections::HashSet;

use super::{Store, StoreResult};

impl Store {
    /// Manifest digests of the images something in the store refers to:
    /// snapshots' and templates' `image_digest`, sandboxes' `oci:<digest>`.
    pub async fn referenced_images(&self) -> StoreResult<HashSet<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT image_digest FROM snapshots WHERE image_digest IS NOT NULL \
             UNION SELECT image_digest FROM templates WHERE image_digest IS NOT NULL \
             UNION SELECT SUBSTR(image, 5) FROM sandboxes WHERE image LIKE 'oci:%'",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(digest,)| digest).collect())
    }
}
