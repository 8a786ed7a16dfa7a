using Microsoft.Data.Sqlite;
using Verifier.Core;
using Verifier.Store;

namespace Verifier.Store.Tests;

public sealed class StoreTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), $"verifier-store-{Guid.NewGuid():N}");
    string Db => Path.Combine(_dir, "v.db");
    public StoreTests() => Directory.CreateDirectory(_dir);
    public void Dispose() { SqliteConnection.ClearAllPools(); Directory.Delete(_dir, true); }

    static string H(char c) => new(c, 64);

    static RunRecord Run(string strategy, long flops, double b0, char transcript) =>
        new(0, strategy, "{}", H('m'), H('d'), null, b0, 0.001, flops, flops * 384.0, 1.0, H(transcript), $"/t/{transcript}.json", "");

    static CheckRecord Accept(char transcript, bool ok = true) => new(H(transcript), ok, ok ? "every claim certified" : "step 3: below", null, null, null, null, "checker/1", 0.5);

    [Fact]
    public void Migrations_run_once_and_record_their_version()
    {
        using (var s = new VerifierStore(Db)) Assert.Equal(VerifierStore.LatestVersion, s.SchemaVersion);
        using (var s = new VerifierStore(Db)) Assert.Equal(VerifierStore.LatestVersion, s.SchemaVersion);
        using var raw = new SqliteConnection($"Data Source={Db};Pooling=False");
        raw.Open();
        using var c = raw.CreateCommand();
        c.CommandText = "SELECT COUNT(*) FROM schema_migrations";
        Assert.Equal((long)VerifierStore.LatestVersion, (long)c.ExecuteScalar()!);
    }

    [Fact]
    public void Runs_carry_the_verdict_of_their_latest_check_and_every_write_is_audited()
    {
        using var s = new VerifierStore(Db);
        s.RecordRun(Run("brute-force", 100, 0.1, 'a'), [new("model_weights", H('m'), "/m")]);
        s.RecordRun(Run("trivial", 10, 5.0, 'b'), []);
        s.RecordCheck(Accept('a'));
        s.RecordCheck(Accept('b', ok: false));
        s.RecordCheck(Accept('b'));
        var runs = s.Runs();
        Assert.Equal(["accepted", "accepted"], runs.Select(r => r.Verdict));
        Assert.Equal(5, s.Audit().Count);
        Assert.True(s.VerifyAudit().Intact);
        Assert.Equal(["run", "run", "check", "check", "check"], s.Audit().Select(e => e.Action));
    }

    [Fact]
    public void The_audit_log_refuses_updates_and_deletes()
    {
        using (var s = new VerifierStore(Db)) s.RecordRun(Run("trivial", 10, 5.0, 'b'), []);
        using var raw = new SqliteConnection($"Data Source={Db};Pooling=False");
        raw.Open();
        foreach (var sql in new[] { "UPDATE audit SET payload = '{}' WHERE seq = 1", "DELETE FROM audit WHERE seq = 1" })
        {
            using var c = raw.CreateCommand();
            c.CommandText = sql;
            var e = Assert.Throws<SqliteException>(() => c.ExecuteNonQuery());
            Assert.Contains("append-only", e.Message);
        }
    }

    [Theory]
    [InlineData("UPDATE audit SET payload = '{\"run_id\":99}' WHERE seq = 2", 2, "edited")]
    [InlineData("UPDATE audit SET at = '2000-01-01T00:00:00.0000000Z' WHERE seq = 3", 3, "edited")]
    [InlineData("DELETE FROM audit WHERE seq = 2", 3, "missing")]
    [InlineData("UPDATE audit SET hash = 'x' WHERE seq = 1", 1, "edited")]
    public void Editing_the_file_behind_the_tools_back_is_detected_at_the_first_bad_entry(string sql, long firstBad, string problem)
    {
        using (var s = new VerifierStore(Db))
        {
            s.RecordRun(Run("brute-force", 100, 0.1, 'a'), []);
            s.RecordRun(Run("trivial", 10, 5.0, 'b'), []);
            s.RecordCheck(Accept('a'));
            Assert.True(s.VerifyAudit().Intact);
        }
        using (var raw = new SqliteConnection($"Data Source={Db};Pooling=False"))
        {
            raw.Open();
            using var c = raw.CreateCommand();
            c.CommandText = "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete; " + sql;
            c.ExecuteNonQuery();
        }
        using var again = new VerifierStore(Db);
        var bad = again.VerifyAudit();
        Assert.False(bad.Intact);
        Assert.Equal(firstBad, bad.Problems[0].Seq);
        Assert.Contains(problem, bad.Problems[0].Message);
    }

    [Fact]
    public void Writers_racing_to_create_a_new_store_never_see_it_half_created()
    {
        // Without building the new store aside and publishing it whole, a writer could find the 0-byte file another
        // writer had just created and refuse it as truncated.
        for (int round = 0; round < 10; round++)
        {
            string db = Path.Combine(_dir, $"race-{round}.db");
            var errors = new System.Collections.Concurrent.ConcurrentBag<Exception>();
            var threads = Enumerable.Range(0, 6).Select(i => new Thread(() =>
            {
                try { using var s = new VerifierStore(db); s.RecordRun(Run("trivial", 10, 5.0, (char)('a' + i)), []); }
                catch (Exception e) { errors.Add(e); }
            })).ToList();
            threads.ForEach(t => t.Start());
            threads.ForEach(t => t.Join());
            Assert.Empty(errors);
            using var check = new VerifierStore(db);
            Assert.Equal(6, check.Runs().Count);
            Assert.True(check.VerifyAudit().Intact);
            Assert.Empty(Directory.EnumerateFiles(_dir, $"race-{round}.db.new-*"));
        }
    }

    [Fact]
    public void Concurrent_writers_on_separate_connections_lose_nothing()
    {
        using (new VerifierStore(Db)) { }
        var threads = Enumerable.Range(0, 6).Select(i => new Thread(() =>
        {
            using var s = new VerifierStore(Db);
            for (int k = 0; k < 15; k++) s.RecordRun(Run("trivial", 10 + k, 5.0, (char)('a' + i)), []);
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        using var check = new VerifierStore(Db);
        Assert.Equal(90, check.Runs().Count);
        Assert.Equal(90, check.Audit().Count);
        Assert.True(check.VerifyAudit().Intact);
    }

    [Fact]
    public void A_locked_database_gives_a_clear_error_after_the_busy_timeout()
    {
        using (new VerifierStore(Db)) { }
        using var raw = new SqliteConnection($"Data Source={Db};Pooling=False");
        raw.Open();
        using var tx = raw.BeginTransaction(deferred: false);   // holds the write lock
        using var s = new VerifierStore(Db, busyTimeoutSeconds: 1);
        var e = Assert.Throws<StoreException>(() => s.RecordRun(Run("trivial", 1, 1, 'z'), []));
        Assert.Contains("locked", e.Message);
        Assert.Contains(Db, e.Message);
    }

    [Fact]
    public void A_file_that_is_not_a_database_is_refused()
    {
        File.WriteAllText(Db, "this is not sqlite, just text long enough to look like a header........................................");
        var e = Assert.Throws<StoreException>(() => new VerifierStore(Db));
        Assert.Contains("not a Verifier database", e.Message);
    }

    [Fact]
    public void Frontier_keeps_accepted_pareto_points_and_the_baseline_joins_trivial_and_brute_force()
    {
        var runs = new[]
        {
            Run("brute-force", 1000, 0.1, 'a') with { Id = 1, Verdict = "accepted" },
            Run("trivial", 10, 10.0, 'b') with { Id = 2, Verdict = "accepted" },
            Run("clustered", 100, 5.0, 'c') with { Id = 3, Verdict = "accepted" },
            Run("crosscoder-tables", 200, 6.0, 'd') with { Id = 4, Verdict = "accepted" },      // dominated by clustered
            Run("clustered", 50, 1.0, 'e') with { Id = 5, Verdict = "rejected" },               // not accepted: ignored
            Run("clustered", 60, 1.0, 'f') with { Id = 6, Verdict = null },                     // never checked: ignored
        };
        var points = Frontier.Compute(runs);
        Assert.Equal([2L, 3, 4, 1], points.Select(p => p.RunId));
        Assert.Equal([true, true, false, true], points.Select(p => p.Pareto));
        var mid = points.Single(p => p.RunId == 3);
        Assert.Equal(10.0 + (0.1 - 10.0) * 0.5, mid.Baseline!.Value, 12);   // log10(100) is halfway between 1 and 3
    }
}
