/* GET /sync/capabilities, /syncx/health and /syncx/status (SPEC-v2 §3.12, §3.13): what this
 * deployment serves, and the operational invariants of the sidecar. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

/* The features of the reference, in its key order (Go prints a map's keys sorted). */
static void write_features(const struct bundle_ctx *c, bool watch, strbuf_t *sb)
{
    static const char *const on[] = {
        "accepted_push_replay_visibility", NULL /* bundle_change_watch */, "bundle_pull", "bundle_push",
        "capabilities_endpoint", "committed_bundle_row_fetch", "committed_bundle_visibility", "connect_lifecycle",
        "graceful_shutdown", "history_pruned_errors", "history_pruned_visibility", "push_session_chunking",
        "registered_write_rejection_enforced", "retained_floor_visibility", "retained_window_visibility",
        "scope_initialization_leases", NULL /* server_checkpoint_tracking */, "snapshot_chunking",
        "status_endpoint", "structured_sync_keys",
    };
    (void)c;
    sb_putc(sb, '{');
    for (size_t i = 0; i < sizeof on / sizeof on[0]; i++) {
        if (i)
            sb_putc(sb, ',');
        if (i == 1)
            sb_printf(sb, "\"bundle_change_watch\":%s", watch ? "true" : "false");
        else if (i == 16)
            sb_puts(sb, "\"server_checkpoint_tracking\":false");
        else
            sb_printf(sb, "\"%s\":true", on[i]);
    }
    sb_putc(sb, '}');
}

static void write_tables(const struct bundle_ctx *c, strbuf_t *sb)
{
    sb_putc(sb, '[');
    for (int i = 0; i < c->catalog->n_tables; i++) {
        const struct bundle_catalog_table *t = &c->catalog->tables[i];
        char name[2 * BUNDLE_NAME_MAX + 2];
        snprintf(name, sizeof name, "%s.%s", t->schema, t->table);
        if (i)
            sb_putc(sb, ',');
        bj_str(sb, name);
    }
    sb_putc(sb, ']');
}

static long seconds(long ms)
{
    return ms / 1000;
}

void bundle_capabilities(const struct bundle_ctx *c, bool watch_allowed, struct bundle_reply *r)
{
    const struct config *cfg = c->cfg;
    strbuf_t *sb = &r->body;
    sb_printf(sb, "{\"protocol_version\":\"v1\",\"schema_version\":%ld,\"app_name\":", cfg->schema_version);
    bj_str(sb, cfg->app_name ? cfg->app_name : "");
    if (c->catalog->n_tables) {
        sb_puts(sb, ",\"registered_tables\":");
        write_tables(c, sb);
        sb_puts(sb, ",\"registered_table_specs\":[");
        for (int i = 0; i < c->catalog->n_tables; i++) {
            const struct bundle_catalog_table *t = &c->catalog->tables[i];
            if (i)
                sb_putc(sb, ',');
            sb_puts(sb, "{\"schema\":");
            bj_str(sb, t->schema);
            sb_puts(sb, ",\"table\":");
            bj_str(sb, t->table);
            sb_puts(sb, ",\"sync_key_columns\":[");
            bj_str(sb, t->key_column);
            sb_puts(sb, "]}");
        }
        sb_putc(sb, ']');
    }
    sb_puts(sb, ",\"features\":");
    write_features(c, watch_allowed, sb);
    sb_printf(sb,
              ",\"bundle_limits\":{\"max_bundles_per_pull\":%ld,\"default_rows_per_push_chunk\":%ld,"
              "\"max_rows_per_push_chunk\":%ld",
              cfg->max_bundles_per_pull, cfg->default_rows_per_push_chunk, cfg->max_rows_per_push_chunk);
    if (seconds(cfg->push_session_ttl_ms))
        sb_printf(sb, ",\"push_session_ttl_seconds\":%ld", seconds(cfg->push_session_ttl_ms));
    sb_printf(sb,
              ",\"default_rows_per_committed_bundle_chunk\":%ld,\"max_rows_per_committed_bundle_chunk\":%ld,"
              "\"default_rows_per_snapshot_chunk\":%ld,\"max_rows_per_snapshot_chunk\":%ld",
              cfg->default_rows_per_committed_bundle_chunk, cfg->max_rows_per_committed_bundle_chunk,
              cfg->default_rows_per_snapshot_chunk, cfg->max_rows_per_snapshot_chunk);
    if (seconds(cfg->snapshot_session_ttl_ms))
        sb_printf(sb, ",\"snapshot_session_ttl_seconds\":%ld", seconds(cfg->snapshot_session_ttl_ms));
    if (cfg->max_rows_per_snapshot_session)
        sb_printf(sb, ",\"max_rows_per_snapshot_session\":%ld", cfg->max_rows_per_snapshot_session);
    if (cfg->max_bytes_per_snapshot_session)
        sb_printf(sb, ",\"max_bytes_per_snapshot_session\":%ld", cfg->max_bytes_per_snapshot_session);
    if (seconds(cfg->initialization_lease_ttl_ms))
        sb_printf(sb, ",\"initialization_lease_ttl_seconds\":%ld", seconds(cfg->initialization_lease_ttl_ms));
    sb_puts(sb, "}}");
    bundle_ok(r, 200);
}

void bundle_status(const struct bundle_ctx *c, bool health, bool shutting_down, struct bundle_reply *r)
{
    PGresult *res = bq(c,
                       "SELECT (SELECT count(*) FROM sync.user_state WHERE retained_bundle_floor > next_bundle_seq - 1), "
                       "coalesce(max(greatest(next_bundle_seq - 1, 0)), 0), "
                       "coalesce(min(retained_bundle_floor), 0), coalesce(max(retained_bundle_floor), 0), "
                       "coalesce(min(greatest(next_bundle_seq - 1 - retained_bundle_floor, 0)), 0), "
                       "coalesce(max(greatest(next_bundle_seq - 1 - retained_bundle_floor, 0)), 0), "
                       "(SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM sync.history_pruned_error_seq), "
                       "(SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM sync.accepted_push_replay_seq), "
                       "(SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM sync.rejected_registered_write_seq), "
                       "(SELECT count(*) FROM sync.bundle_log), (SELECT coalesce(sum(byte_count), 0) FROM sync.bundle_log) "
                       "FROM sync.user_state");
    if (!bq_ok(res) || PQntuples(res) != 1) {
        if (health)
            bundle_fail_db(c, r, res, "health_failed", "Failed to get health status");
        else
            bundle_fail_db(c, r, res, "status_failed", "Failed to get service status");
        return;
    }
    bool floor_ahead = bq_int(res, 0, 0) > 0;
    bool healthy = !shutting_down && !floor_ahead;
    strbuf_t *sb = &r->body;
    sb_printf(sb, "{\"status\":\"%s\",\"version\":\"v1\",\"app_name\":", healthy ? "healthy" : "unhealthy");
    bj_str(sb, c->cfg->app_name ? c->cfg->app_name : "");
    sb_printf(sb, ",\"lifecycle\":\"%s\",\"accepting_operations\":%s,\"inflight_operations\":%ld,\"registered_tables\":",
              shutting_down ? "shutting_down" : "running", shutting_down ? "false" : "true", c->inflight);
    if (c->catalog->n_tables)
        write_tables(c, sb);
    else
        sb_puts(sb, "null");
    sb_puts(sb, ",\"features\":");
    write_features(c, c->cfg->bundle_watch, sb);
    static const char *const names[] = {
        "user_state_retention_floor_ahead_count", "latest_bundle_seq_max", "retained_bundle_floor_min",
        "retained_bundle_floor_max", "retained_bundle_window_min", "retained_bundle_window_max",
        "history_pruned_error_count", "accepted_push_replay_count", "rejected_registered_write_count",
        "committed_bundle_count", "committed_bundle_bytes",
    };
    for (int i = 0; i < 11; i++)
        sb_printf(sb, ",\"%s\":%lld", names[i], bq_int(res, 0, i));
    sb_putc(sb, '}');
    bundle_ok(r, health && !healthy ? 503 : 200);
}
