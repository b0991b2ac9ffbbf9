"""Sessions counted into report days by triggers on the session table
(PostgreSQL): collect inserts a new visitor's session with plain SQL, in
the same statement as its leases, so no Python code sees that insert. One
statement-level trigger per insert and delete adds up the statement's rows,
into the day's rows and the week's (grouping + "/week", day: its Monday).
Migration 0004 then counts every project's report days from the raw rows."""

from django.db import migrations

GROUPS = """
    FROM {rows} s
    JOIN tracker_visitor v ON v.id = s.visitor_id
    JOIN tracker_site t ON t.id = v.site_id
    JOIN projects_project p ON p.id = t.project_id
    CROSS JOIN LATERAL (VALUES
        ((s.started_at AT TIME ZONE p.time_zone)::date, ''),
        (date_trunc('week', s.started_at AT TIME ZONE p.time_zone)::date, '/week')
    ) AS w(day, suffix)
    CROSS JOIN LATERAL (VALUES
        ('channel', s.channel, '', '', '', '', 0::bigint),
        ('source', '', s.source, s.utm_medium, '', '', 0::bigint),
        ('medium', '', '', s.utm_medium, '', '', 0::bigint),
        ('campaign', '', s.source, s.utm_medium, s.utm_campaign, '', 0::bigint),
        ('keyword', '', '', '', '', s.keyword, 0::bigint),
        ('site', '', '', '', '', '', v.site_id::bigint)
    ) AS g(grouping, channel, source, medium, campaign, keyword, ref)
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9
"""
SELECT = (
    "SELECT t.project_id, g.grouping || w.suffix AS grouping, w.day, "
    "g.channel, g.source, g.medium, g.campaign, g.keyword, g.ref, count(*) AS n"
)

CREATE = f"""
CREATE FUNCTION costs_report_day_sessions_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO costs_sessionday AS r (project_id, grouping, day, channel, source, medium, campaign, keyword, ref,
                                       sessions)
    {SELECT} {GROUPS.format(rows="added")}
    ON CONFLICT (project_id, grouping, day, channel, source, medium, campaign, keyword, ref)
    DO UPDATE SET sessions = r.sessions + excluded.sessions;
    RETURN NULL;
END $$;

CREATE FUNCTION costs_report_day_sessions_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Only rows that exist: while a project is deleted its days may go first.
    UPDATE costs_sessionday AS r SET sessions = r.sessions - d.n
    FROM ({SELECT} {GROUPS.format(rows="removed")}) AS d
    WHERE r.project_id = d.project_id AND r.grouping = d.grouping AND r.day = d.day AND r.channel = d.channel
      AND r.source = d.source AND r.medium = d.medium AND r.campaign = d.campaign AND r.keyword = d.keyword
      AND r.ref = d.ref;
    RETURN NULL;
END $$;

CREATE TRIGGER costs_report_day_sessions_added AFTER INSERT ON tracker_session
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION costs_report_day_sessions_added();
CREATE TRIGGER costs_report_day_sessions_removed AFTER DELETE ON tracker_session
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION costs_report_day_sessions_removed();
"""

DROP = """
DROP TRIGGER IF EXISTS costs_report_day_sessions_added ON tracker_session;
DROP TRIGGER IF EXISTS costs_report_day_sessions_removed ON tracker_session;
DROP FUNCTION IF EXISTS costs_report_day_sessions_added();
DROP FUNCTION IF EXISTS costs_report_day_sessions_removed();
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("costs", "0002_report_days"),
        ("tracker", "0004_session_region"),
        ("attribution", "0007_translatable_names"),
        ("mailbox_sync", "0007_translatable_names"),
        ("substitution", "0007_blocks_own_address_and_leased_block"),
    ]

    operations = [
        migrations.RunPython(create, drop),
    ]
