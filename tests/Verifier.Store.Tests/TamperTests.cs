using Microsoft.Data.Sqlite;
using Verifier.Core;
using Verifier.Store;

namespace Verifier.Store.Tests;

/// <summary>Each way of changing the store behind the tool's back (spec/store.md, "What is detected") is caught: by
/// <c>VerifyAudit</c> alone, or with the head the user kept.</summary>
public sealed class TamperTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), $"verifier-tamper-{Guid.NewGuid():N}");
    string Db => Path.Combine(_dir, "v.db");
    public TamperTests() => Directory.CreateDirectory(_dir);
    public void Dispose() { SqliteConnection.ClearAllPools(); Directory.Delete(_dir, true); }

    static string H(char c) => new(c, 64);

    static RunRecord Run(string strategy, long flops, double b0, char transcript) =>
        new(0, strategy, "{}", H('a'), H('d'), null, b0, 0.001, flops, flops * 384.0, 1.0, H(transcript), $"/t/{transcript}.json", "");

    static CheckRecord Check(char transcript, bool ok) =>
        new(H(transcript), ok, ok ? "every claim certified" : "step 3 (BF): claimed 0.01 below certified 0.1", ok ? null : 3, ok ? null : "BF",
            ok ? null : 0.01, ok ? null : 0.1, "checker/1", 0.5);

    /// <summary>Runs 1 (brute force, accepted), 2 (trivial, accepted) and 3 (clustered, rejected): entries 1–6; returns the head.</summary>
    AuditHead Seed()
    {
        using var s = new VerifierStore(Db);
        s.RecordRun(Run("brute-force", 1000, 0.1, 'x'), [new("model_weights", H('a'), "/m/model.safetensors"), new("dataset", H('d'), "/d.jsonl")]);
        s.RecordRun(Run("trivial", 10, 10.0, 'y'), []);
        s.RecordRun(Run("clustered", 100, 0.01, 'z'), []);
        s.RecordCheck(Check('x', true));
        s.RecordCheck(Check('y', true));
        s.RecordCheck(Check('z', false));
        Assert.True(s.VerifyAudit().Intact);
        return s.Head();
    }

    void Sql(string sql, string? db = null)
    {
        using var raw = new SqliteConnection($"Data Source={db ?? Db};Pooling=False");
        raw.Open();
        using var c = raw.CreateCommand();
        c.CommandText = sql;
        c.ExecuteNonQuery();
    }

    const string DropTableTriggers = "DROP TRIGGER runs_no_update; DROP TRIGGER runs_no_delete; DROP TRIGGER checks_no_update; DROP TRIGGER checks_no_delete;";
    const string DropAuditTriggers = "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;";

    static AuditProblem First(VerifierStore s)
    {
        var r = s.VerifyAudit();
        Assert.False(r.Intact);
        return r.Problems[0];
    }

    [Theory]
    [InlineData("UPDATE runs SET b0 = 0.001 WHERE id = 1", "runs are append-only")]
    [InlineData("DELETE FROM runs WHERE id = 1", "runs are append-only")]
    [InlineData("UPDATE checks SET verdict = 'accepted' WHERE id = 3", "checks are append-only")]
    [InlineData("DELETE FROM checks WHERE id = 3", "checks are append-only")]
    [InlineData("UPDATE artefacts SET path = '/elsewhere'", "artefacts are append-only")]
    public void The_recorded_tables_refuse_updates_and_deletes_through_sql(string sql, string message)
    {
        Seed();
        var e = Assert.Throws<SqliteException>(() => Sql(sql));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void Updating_a_runs_b0_behind_the_tools_back_is_detected_and_runs_refuses()
    {
        Seed();
        Sql(DropTableTriggers + "UPDATE runs SET b0 = 0.001 WHERE id = 1;");
        using var s = VerifierStore.OpenExisting(Db);
        var p = First(s);
        Assert.Equal(("runs", "1", "b0", 1L), (p.Table, p.Key, p.Column, p.Seq));
        Assert.Contains("runs id 1 column b0 is 0.001 but audit entry 1 recorded 0.1", p.Message);
        var e = Assert.Throws<AuditBrokenException>(() => s.Runs());
        Assert.Equal(ExitCodes.AuditBroken, e.ExitCode);
        Assert.Contains(Db, e.Message);
        Assert.Contains("runs id 1 column b0", e.Message);
    }

    [Fact]
    public void The_checkers_own_verdicts_cannot_be_changed_in_the_store_without_audit_verify_failing()
    {
        Seed();
        using (var before = VerifierStore.OpenExisting(Db))
            Assert.DoesNotContain(Frontier.Compute(before.Runs(H('a'), H('d'))), p => p.Strategy == "clustered");
        Sql(DropTableTriggers + "UPDATE checks SET verdict = 'accepted', reason = 'every claim certified' WHERE id = 3;");
        using var s = VerifierStore.OpenExisting(Db);
        var r = s.VerifyAudit();
        Assert.False(r.Intact);
        Assert.Contains(r.Problems, p => p is { Table: "checks", Key: "3", Column: "verdict", Seq: 6 });
        Assert.Contains("checks id 3 column verdict is \"accepted\" but audit entry 6 recorded \"rejected\"", r.Problems[0].Message);
        // The frontier never sees the forged acceptance: it refuses to answer.
        var e = Assert.Throws<AuditBrokenException>(() => Frontier.Compute(s.Runs(H('a'), H('d'))));
        Assert.Contains("checks id 3 column verdict", e.Message);
    }

    [Fact]
    public void A_checks_certified_accuracy_is_recorded_with_it_shown_on_the_frontier_and_cannot_be_raised()
    {
        using (var s = new VerifierStore(Db))
        {
            s.RecordRun(Run("brute-force", 1000, 0.1, 'x'), [new("model_weights", H('a'), "/m/model.safetensors"), new("dataset", H('d'), "/d.jsonl")]);
            s.RecordCheck(Check('x', true) with { Errors = 3, Positions = 100, AccuracyLb = 0.97 });
            Assert.True(s.VerifyAudit().Intact);
            Assert.Equal(0.97, Assert.Single(Frontier.Compute(s.Runs(H('a'), H('d')))).AccuracyLb);
        }
        Assert.Throws<SqliteException>(() => Sql("UPDATE check_accuracy SET accuracy_lb = 1.0"));
        Sql("DROP TRIGGER check_accuracy_no_update; UPDATE check_accuracy SET accuracy_lb = 1.0, errors = 0;");
        using var t = VerifierStore.OpenExisting(Db);
        var p = First(t);
        Assert.Equal("check_accuracy", p.Table);
        Assert.Contains("changed behind the tool's back", p.Message);
    }

    [Fact]
    public void Inserting_a_forged_run_row_is_detected_as_not_covered()
    {
        Seed();
        Sql($"INSERT INTO runs (strategy, parameters, model_sha256, dataset_sha256, b0, flops, bits, wall_seconds, transcript_sha256, transcript_path, created) " +
            $"VALUES ('clustered', '{{}}', '{H('a')}', '{H('d')}', 0.0001, 1, 1, 1, '{H('x')}', '/t/x.json', '2025-01-01');");
        using var s = VerifierStore.OpenExisting(Db);
        var p = First(s);
        Assert.Equal(("runs", "4", null, (long?)null), (p.Table, p.Key, p.Column, p.Seq));
        Assert.Contains("runs id 4 is not covered by the audit chain", p.Message);
        Assert.Throws<AuditBrokenException>(() => s.Runs());
    }

    [Fact]
    public void Deleting_a_run_row_is_detected_as_missing()
    {
        Seed();
        Sql(DropTableTriggers + "DELETE FROM runs WHERE id = 2;");
        using var s = VerifierStore.OpenExisting(Db);
        var p = First(s);
        Assert.Equal(("runs", "2", 2L), (p.Table, p.Key, p.Seq));
        Assert.Contains("runs id 2, recorded by audit entry 2, is missing from the table", p.Message);
    }

    [Theory]
    [InlineData("UPDATE audit SET payload = replace(payload, '\"rejected\"', '\"accepted\"') WHERE seq = 6", 6, "does not hash")]
    [InlineData("DELETE FROM audit WHERE seq = 4", 5, "entry 4 is missing")]
    public void Dropping_the_audit_triggers_and_editing_or_deleting_an_entry_is_detected(string sql, long seq, string message)
    {
        Seed();
        Sql(DropAuditTriggers + sql);
        using var s = VerifierStore.OpenExisting(Db);
        var p = First(s);
        Assert.Equal(seq, p.Seq);
        Assert.Contains(message, p.Message);
        Assert.Throws<AuditBrokenException>(() => s.Head());
    }

    [Fact]
    public void Deleting_the_last_entry_and_its_row_is_detected_with_the_noted_head()
    {
        var head = Seed();
        Sql(DropAuditTriggers + DropTableTriggers + "DELETE FROM audit WHERE seq = 6; DELETE FROM checks WHERE id = 3;");
        using var s = VerifierStore.OpenExisting(Db);
        Assert.True(s.VerifyAudit().Intact);   // a consistent shorter store: only the kept head can tell
        var r = s.VerifyAudit(head);
        Assert.False(r.Intact);
        Assert.Equal(6, r.Problems[0].Seq);
        Assert.Contains($"the noted head {head} is not in the chain, which ends at entry 5", r.Problems[0].Message);
    }

    [Fact]
    public void Rewriting_the_whole_chain_with_recomputed_hashes_is_detected_with_the_noted_head()
    {
        var head = Seed();
        List<AuditEntry> entries;
        using (var s = VerifierStore.OpenExisting(Db)) entries = [.. s.Audit()];
        // The forger flips check 3 to accepted in the table and in entry 6's payload, then recomputes every hash.
        Sql(DropAuditTriggers + DropTableTriggers + "UPDATE checks SET verdict = 'accepted' WHERE id = 3; DELETE FROM audit;");
        string prev = VerifierStore.Genesis;
        foreach (var e in entries)
        {
            string payload = e.Seq == 6 ? e.Payload.Replace("\"rejected\"", "\"accepted\"") : e.Payload;
            string hash = VerifierStore.EntryHash(prev, e.Seq, e.At, e.Action, payload);
            Sql($"INSERT INTO audit (seq, at, action, payload, prev_hash, hash) VALUES ({e.Seq}, '{e.At}', '{e.Action}', '{payload.Replace("'", "''")}', '{prev}', '{hash}');");
            prev = hash;
        }
        using var again = VerifierStore.OpenExisting(Db);
        Assert.True(again.VerifyAudit().Intact);   // self-consistent: no key in the store can tell
        var r = again.VerifyAudit(head);
        Assert.False(r.Intact);
        Assert.Equal(6, r.Problems[0].Seq);
        Assert.Contains($"not the noted {head.Hash}: the chain was rewritten", r.Problems[0].Message);
    }

    [Fact]
    public void A_store_truncated_to_zero_bytes_is_refused_by_readers_and_writers()
    {
        Seed();
        SqliteConnection.ClearAllPools();
        File.WriteAllBytes(Db, []);
        foreach (var open in new Func<VerifierStore>[] { () => VerifierStore.OpenExisting(Db), () => new VerifierStore(Db) })
        {
            var e = Assert.Throws<AuditBrokenException>(open);
            Assert.Equal(ExitCodes.AuditBroken, e.ExitCode);
            Assert.Contains($"{Db}: the store is empty (0 bytes): it was truncated", e.Message);
        }
        Assert.Equal(0, new FileInfo(Db).Length);
    }

    [Fact]
    public void A_missing_store_is_an_error_for_readers_and_is_not_created()
    {
        var e = Assert.Throws<InvalidInputException>(() => VerifierStore.OpenExisting(Db));
        Assert.Contains($"{Db}: store: does not exist", e.Message);
        Assert.False(File.Exists(Db));
        Assert.False(File.Exists(Db + "-wal"));
    }

    [Fact]
    public void Deleting_the_wal_after_an_uncheckpointed_write_is_detected_with_the_noted_head()
    {
        Seed();
        string crashed = Path.Combine(_dir, "crashed.db");
        using var s = new VerifierStore(Db);
        // A reader on an older snapshot keeps the next write's frames in the WAL (the checkpoint cannot copy them yet).
        using var reader = new SqliteConnection($"Data Source={Db};Pooling=False");
        reader.Open();
        using var snapshot = reader.BeginTransaction(deferred: true);
        using (var c = reader.CreateCommand()) { c.Transaction = snapshot; c.CommandText = "SELECT COUNT(*) FROM audit;"; c.ExecuteScalar(); }
        s.RecordRun(Run("clustered", 50, 0.05, 'w'), []);
        var head = s.LastWrite!;
        Assert.Equal(7, head.Seq);
        File.Copy(Db, crashed);   // the machine crashed now, and the -wal was deleted afterwards
        using var after = VerifierStore.OpenExisting(crashed);
        Assert.True(after.VerifyAudit().Intact);   // the lost write left a consistent older store
        var r = after.VerifyAudit(head);
        Assert.False(r.Intact);
        Assert.Contains("the noted head 7:", r.Problems[0].Message);
        Assert.Contains("ends at entry 6", r.Problems[0].Message);
    }

    [Fact]
    public void A_committed_write_reaches_the_main_file_so_losing_the_wal_afterwards_loses_nothing()
    {
        Seed();
        string crashed = Path.Combine(_dir, "crashed.db");
        using var s = new VerifierStore(Db);   // still open: SQLite has not checkpointed at close
        s.RecordRun(Run("clustered", 50, 0.05, 'w'), []);
        var head = s.LastWrite!;
        File.Copy(Db, crashed);
        using var after = VerifierStore.OpenExisting(crashed);
        Assert.True(after.VerifyAudit(head).Intact);
        Assert.Equal(4, after.Runs().Count);
    }

    [Fact]
    public void The_head_of_an_empty_store_is_entry_zero_and_verifies()
    {
        using (new VerifierStore(Db)) { }
        using var s = VerifierStore.OpenExisting(Db);
        var head = s.Head();
        Assert.Equal(new AuditHead(0, VerifierStore.Genesis), head);
        Assert.True(s.VerifyAudit(head).Intact);
        Assert.False(s.VerifyAudit(new AuditHead(1, H('f'))).Intact);
    }

    [Fact]
    public void A_noted_head_that_later_writes_extend_still_verifies()
    {
        var head = Seed();
        using var s = new VerifierStore(Db);
        s.RecordCheck(Check('z', true));
        var r = s.VerifyAudit(head);
        Assert.True(r.Intact);
        Assert.Equal(7, r.Head.Seq);
    }

    [Theory]
    [InlineData("12")]
    [InlineData("12:abc")]
    [InlineData("-1:0000000000000000000000000000000000000000000000000000000000000000")]
    [InlineData("x:0000000000000000000000000000000000000000000000000000000000000000")]
    [InlineData("3:zz00000000000000000000000000000000000000000000000000000000000000")]
    public void A_malformed_head_is_a_usage_error(string text)
    {
        var e = Assert.Throws<UsageException>(() => AuditHead.Parse(text));
        Assert.Contains("SEQ:HASH", e.Message);
    }

    [Fact]
    public void Every_write_records_its_complete_rows_in_its_entry()
    {
        Seed();
        using var s = VerifierStore.OpenExisting(Db);
        var first = s.Audit()[0];
        using var doc = System.Text.Json.JsonDocument.Parse(first.Payload);
        Assert.Equal(3, doc.RootElement.GetProperty("format").GetInt32());
        var rows = doc.RootElement.GetProperty("rows").EnumerateArray().ToList();
        Assert.Equal(["runs", "artefacts", "artefacts", "artefacts"], rows.Select(r => r.GetProperty("table").GetString()));
        var run = rows[0].GetProperty("row");
        Assert.Equal(14, run.EnumerateObject().Count());
        Assert.Equal(0.1, run.GetProperty("b0").GetDouble());
        Assert.Equal(384000.0, run.GetProperty("bits").GetDouble());
        Assert.Equal(11, s.VerifyAudit().RowsCovered);   // 3 runs, 3 checks, 5 artefacts (model, dataset, 3 transcripts)
    }

    /// <summary>A store as Verifier left it before schema 3: one run and its rejected check, audited with the old summary payloads.</summary>
    void LegacyStore()
    {
        Sql("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied TEXT NOT NULL);" + VerifierStore.MigrationSql(1) + VerifierStore.MigrationSql(2) +
            "INSERT INTO schema_migrations VALUES (1, '2025-01-01'), (2, '2025-01-02');" +
            $"INSERT INTO artefacts VALUES ('{H('x')}', 'transcript', '/t/x.json');" +
            "INSERT INTO runs (strategy, parameters, model_sha256, dataset_sha256, b0, true_loss, flops, bits, wall_seconds, transcript_sha256, transcript_path, created) " +
            $"VALUES ('brute-force', '{{}}', '{H('a')}', '{H('d')}', 0.1, 0.001, 1000, 384000, 1, '{H('x')}', '/t/x.json', '2025-01-03');" +
            "INSERT INTO checks (transcript_sha256, verdict, reason, step, lemma, claimed, certified, checker_version, seconds, created) " +
            $"VALUES ('{H('x')}', 'rejected', 'step 0 (BF): below', 0, 'BF', 0.01, 0.1, 'checker/1', 0.5, '2025-01-04');");
        var snake = new System.Text.Json.JsonSerializerOptions { PropertyNamingPolicy = System.Text.Json.JsonNamingPolicy.SnakeCaseLower };
        (string Action, object Payload)[] entries =
        [
            ("run", new { run_id = 1L, Strategy = "brute-force", B0 = 0.1, Flops = 1000L, TranscriptSha256 = H('x'), ModelSha256 = H('a'), DatasetSha256 = H('d') }),
            ("check", new { check_id = 1L, TranscriptSha256 = H('x'), verdict = "rejected", Reason = "step 0 (BF): below", CheckerVersion = "checker/1" }),
        ];
        string prev = VerifierStore.Genesis;
        for (int k = 0; k < entries.Length; k++)
        {
            string json = System.Text.Json.JsonSerializer.Serialize(entries[k].Payload, snake), at = $"2025-01-0{k + 3}T00:00:00.0000000Z";
            string hash = VerifierStore.EntryHash(prev, k + 1, at, entries[k].Action, json);
            Sql($"INSERT INTO audit VALUES ({k + 1}, '{at}', '{entries[k].Action}', '{json}', '{prev}', '{hash}');");
            prev = hash;
        }
    }

    [Fact]
    public void An_old_store_is_upgraded_by_one_migrate_entry_that_adopts_its_rows_and_then_verifies()
    {
        LegacyStore();
        using (var s = new VerifierStore(Db))
        {
            Assert.Equal(VerifierStore.LatestVersion, s.SchemaVersion);
            var r = s.VerifyAudit();
            Assert.True(r.Intact, string.Join("; ", r.Problems.Select(p => p.Message)));
            Assert.Equal((3L, 2L, (long?)3, 3L), (r.Entries, r.LegacyEntries, r.MigrationEntry, r.RowsCovered));
            Assert.Equal("migrate", s.Audit()[2].Action);
            s.RecordCheck(Check('x', true));
            Assert.True(s.VerifyAudit().Intact);
        }
        Sql(DropTableTriggers + "UPDATE runs SET bits = 1 WHERE id = 1;");   // after the upgrade every column is covered
        using var again = VerifierStore.OpenExisting(Db);
        var p = First(again);
        Assert.Equal(("runs", "1", "bits", 3L), (p.Table, p.Key, p.Column, p.Seq));
    }

    [Fact]
    public void Before_the_upgrade_the_old_entries_still_vouch_for_b0_and_the_verdict_but_not_for_other_columns()
    {
        LegacyStore();
        Sql("UPDATE runs SET bits = 1 WHERE id = 1;");   // not in the old payload: adopted as it is at the upgrade
        using (var s = new VerifierStore(Db)) Assert.True(s.VerifyAudit().Intact);
        SqliteConnection.ClearAllPools();
        File.Delete(Db);
        LegacyStore();
        Sql("UPDATE checks SET verdict = 'accepted' WHERE id = 1;");   // in the old payload: the forgery is caught even though the upgrade adopted it
        using var t = new VerifierStore(Db);
        var p = First(t);
        Assert.Equal(("checks", "1", "verdict", 2L), (p.Table, p.Key, p.Column, p.Seq));
        Assert.Contains("checks id 1 column verdict is \"accepted\" but audit entry 2 recorded \"rejected\"", p.Message);
    }
}
