using System.Text.Json;
using Microsoft.Data.Sqlite;
using Verifier.Core;
using Verifier.Store;

namespace Verifier.Cli.Tests;

/// <summary>The store's read commands against a tampered, truncated or missing store; the head anchor from the command line.</summary>
public sealed class StoreTrustTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), $"verifier-trust-{Guid.NewGuid():N}");
    public StoreTrustTests() => Directory.CreateDirectory(_dir);
    public void Dispose() { SqliteConnection.ClearAllPools(); Directory.Delete(_dir, recursive: true); }
    string P(string name) => Path.Combine(_dir, name);
    static (int Code, string Out, string Err) Run(params string[] args) => CliTests.Run(args);
    static string H(char c) => new(c, 64);

    /// <summary>Two runs and two checks written through the store: entries 1–4.</summary>
    string Seed()
    {
        using var s = new VerifierStore(P("v.db"));
        foreach (var (strategy, b0, t) in new[] { ("brute-force", 0.1, 'x'), ("trivial", 10.0, 'y') })
        {
            s.RecordRun(new RunRecord(0, strategy, "{}", H('a'), H('d'), null, b0, 0.01, 100, 1, 1, H(t), $"/t/{t}.json", ""), []);
            s.RecordCheck(new CheckRecord(H(t), true, "every claim certified", null, null, null, null, "checker/1", 0.1));
        }
        return P("v.db");
    }

    static void Sql(string db, string sql)
    {
        using var raw = new SqliteConnection($"Data Source={db};Pooling=False");
        raw.Open();
        using var c = raw.CreateCommand();
        c.CommandText = sql;
        c.ExecuteNonQuery();
    }

    [Fact]
    public void Audit_head_prints_the_verified_head_and_verify_head_accepts_it()
    {
        string db = Seed();
        var h = Run("audit", "head", "--db", db, "--json");
        Assert.True(h.Code == 0, h.Err);
        using var j = JsonDocument.Parse(h.Out);
        Assert.Equal(4, j.RootElement.GetProperty("seq").GetInt64());
        string head = j.RootElement.GetProperty("head").GetString()!;
        Assert.Equal($"4:{j.RootElement.GetProperty("hash").GetString()}", head);
        var text = Run("audit", "head", "--db", db);
        Assert.Equal($"audit head {head} ({db})", text.Out.Trim());
        var v = Run("audit", "verify", "--db", db, "--head", head);
        Assert.True(v.Code == 0, v.Err);
        Assert.Contains($"audit chain intact: 4 entries, 6 rows covered, head {head}", v.Out);
        Assert.Contains("the noted head 4 is the latest entry", v.Out);
    }

    [Fact]
    public void Audit_verify_head_fails_with_exit_8_when_the_last_entry_was_deleted()
    {
        string db = Seed();
        string head;
        using (var j = JsonDocument.Parse(Run("audit", "head", "--db", db, "--json").Out)) head = j.RootElement.GetProperty("head").GetString()!;
        Sql(db, "DROP TRIGGER audit_no_delete; DROP TRIGGER checks_no_delete; DELETE FROM audit WHERE seq = 4; DELETE FROM checks WHERE id = 2;");
        Assert.Equal(0, Run("audit", "verify", "--db", db).Code);   // consistent without the anchor
        var v = Run("audit", "verify", "--db", db, "--head", head, "--json");
        Assert.Equal(ExitCodes.AuditBroken, v.Code);
        using var r = JsonDocument.Parse(v.Out);
        Assert.False(r.RootElement.GetProperty("intact").GetBoolean());
        Assert.Equal(4, r.RootElement.GetProperty("first_bad_entry").GetInt64());
        Assert.Contains($"error: {db}: the noted head {head} is not in the chain, which ends at entry 3", v.Err);
    }

    [Fact]
    public void Runs_and_audit_refuse_a_store_whose_b0_was_edited_with_exit_8()
    {
        string db = Seed();
        Sql(db, "DROP TRIGGER runs_no_update; UPDATE runs SET b0 = 0.0001 WHERE id = 2;");
        var runs = Run("runs", "--db", db, "--json");
        Assert.Equal(ExitCodes.AuditBroken, runs.Code);
        Assert.Equal("", runs.Out);
        Assert.Contains($"error: {db}: runs id 2 column b0 is 0.0001 but audit entry 3 recorded 10", runs.Err);
        var audit = Run("audit", "verify", "--db", db);
        Assert.Equal(ExitCodes.AuditBroken, audit.Code);
        Assert.Contains("audit chain broken at entry 3: runs id 2 column b0", audit.Out);
        Assert.Equal(ExitCodes.AuditBroken, Run("audit", "head", "--db", db).Code);
    }

    [Theory]
    [InlineData("runs")]
    [InlineData("audit verify")]
    [InlineData("audit head")]
    public void Read_commands_refuse_a_missing_store_and_do_not_create_it(string command)
    {
        var r = Run([.. command.Split(' '), "--db", P("none.db")]);
        Assert.Equal(ExitCodes.InvalidInput, r.Code);
        Assert.Contains($"{P("none.db")}: store: does not exist", r.Err);
        Assert.False(File.Exists(P("none.db")));
    }

    [Theory]
    [InlineData("runs")]
    [InlineData("audit verify")]
    [InlineData("audit head")]
    public void Read_commands_report_a_store_truncated_to_zero_bytes_with_exit_8(string command)
    {
        File.WriteAllBytes(P("empty.db"), []);
        var r = Run([.. command.Split(' '), "--db", P("empty.db")]);
        Assert.Equal(ExitCodes.AuditBroken, r.Code);
        Assert.Contains($"{P("empty.db")}: the store is empty (0 bytes): it was truncated", r.Err);
    }

    [Fact]
    public void A_malformed_head_is_a_usage_error()
    {
        string db = Seed();
        var r = Run("audit", "verify", "--db", db, "--head", "4");
        Assert.Equal(ExitCodes.Usage, r.Code);
        Assert.Contains("expected SEQ:HASH", r.Err);
    }
}
