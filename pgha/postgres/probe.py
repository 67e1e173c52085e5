"""The one query the agent runs on each loop to observe the local Postgres: role, WAL positions,
timeline, streaming, the primary's standbys, and the facts the status body reports."""

STATE_QUERY = """
SELECT pg_is_in_recovery(),
       CASE WHEN pg_is_in_recovery() THEN 0 ELSE (pg_current_wal_lsn() - '0/0')::bigint END,
       COALESCE((pg_last_wal_receive_lsn() - '0/0')::bigint, 0),
       COALESCE((pg_last_wal_replay_lsn() - '0/0')::bigint, 0),
       CASE WHEN pg_is_in_recovery()
            THEN COALESCE((SELECT received_tli FROM pg_stat_wal_receiver WHERE status = 'streaming'),
                          (SELECT timeline_id FROM pg_control_checkpoint()))
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
       COALESCE((SELECT status = 'streaming' FROM pg_stat_wal_receiver), false),
       (SELECT system_identifier::text FROM pg_control_system()),
       (SELECT json_agg(json_build_object('application_name', application_name, 'client_addr', client_addr,
                                          'state', state, 'sync_state', sync_state,
                                          'sync_priority', sync_priority, 'usename', usename,
                                          'write_lsn', (write_lsn - '0/0')::bigint))
          FROM pg_stat_replication),
       pg_last_xact_replay_timestamp()::text,
       current_setting('synchronous_standby_names'),
       EXISTS (SELECT 1 FROM pg_settings WHERE pending_restart),
       current_setting('server_version_num')::int,
       pg_postmaster_start_time()::text,
       CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END,
       (SELECT json_object_agg(s.name, json_build_object(
                   'old_value', s.setting,
                   'new_value', (SELECT f.setting FROM pg_file_settings f WHERE f.name = s.name
                                  ORDER BY f.seqno DESC LIMIT 1)))
          FROM pg_settings s WHERE s.pending_restart),
       (SELECT json_object_agg(slot_name, COALESCE((confirmed_flush_lsn - '0/0')::bigint, 0))
          FROM pg_replication_slots WHERE slot_type = 'logical'),
       current_setting('wal_level'),
       extract(epoch FROM pg_postmaster_start_time())::float8,
       (SELECT count(*) FROM pg_stat_activity
         WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
           AND left(application_name, 4) <> 'pgha'),
       -- the archiver (``core.archive``); its status directory needs superuser or pg_monitor
       (SELECT json_build_object(
                 'mode', current_setting('archive_mode'), 'archived', archived_count, 'failed', failed_count,
                 'last_archived_wal', last_archived_wal, 'last_archived', extract(epoch FROM last_archived_time),
                 'last_failed_wal', last_failed_wal, 'last_failed', extract(epoch FROM last_failed_time),
                 'ready', (SELECT count(*) FROM pg_ls_archive_statusdir() WHERE right(name, 6) = '.ready'),
                 'oldest_ready', (SELECT extract(epoch FROM min(modification)) FROM pg_ls_archive_statusdir()
                                   WHERE right(name, 6) = '.ready'))
          FROM pg_stat_archiver),
       -- physical slots no walsender uses: on a replica, those left from its time as primary (only
       -- replicas use them, and CASE spares a primary the scan)
       CASE WHEN pg_is_in_recovery() THEN
         (SELECT json_agg(slot_name) FROM pg_replication_slots WHERE slot_type = 'physical' AND NOT active) END
"""
