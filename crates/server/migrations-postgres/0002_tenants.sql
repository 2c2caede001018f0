-- Per-tenant quotas; NULL means unlimited.
ALTER TABLE tenants ADD COLUMN max_sandboxes BIGINT;
ALTER TABLE tenants ADD COLUMN max_vcpus BIGINT;
ALTER TABLE tenants ADD COLUMN max_mem_bytes BIGINT;

CREATE INDEX api_keys_tenant ON api_keys (tenant_id);
