using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using Verifier.Core;

namespace Verifier.Store;

public sealed record RunRecord(
    long Id, string Strategy, string Parameters, string ModelSha256, string DatasetSha256, string? CrosscoderSha256,
    double B0, double? TrueLoss, long Flops, double Bits, double WallSeconds, string TranscriptSha256, string TranscriptPath, string Created,
    string? Verdict = null);

public sealed record CheckRecord(
    string TranscriptSha256, bool Accepted, string Reason, int? Step, string? Lemma, double? Claimed, double? Certified,
    string CheckerVersion, double Seconds);

public sealed record AuditEntry(long Seq, string At, string Action, string Payload, string PrevHash, string Hash);

/// <summary>A database that cannot be used: locked beyond the busy timeout, not a Verifier store, or too new.</summary>
public sealed class StoreException(string message, Exception? inner = null) : VerifierException(message, inner)
{
    public override int ExitCode => ExitCodes.Failure;
}

/// <summary>One SQLite file (spec/store.md). WAL mode and a busy timeout, so several processes can write at once;
/// every write is one IMMEDIATE transaction that also appends to the audit chain.</summary>
public sealed class VerifierStore : IDisposable
{
    public const string DefaultFileName = "verifier.db";
    public static readonly string Genesis = new('0', 64);
    readonly SqliteConnection _db;
    public string Path { get; }

    /// <summary>Migrations in order; version i+1 is Migrations[i]. Never edit a released one: append.</summary>
    static readonly string[] Migrations =
    [
        """
        CREATE TABLE artefacts (
            sha256 TEXT PRIMARY KEY CHECK (length(sha256) = 64),
            kind   TEXT NOT NULL,
            path   TEXT
        );
        CREATE TABLE runs (
            id                INTEGER PRIMARY KEY AUTOINCREMENT,
            strategy          TEXT NOT NULL,
            parameters        TEXT NOT NULL,
            model_sha256      TEXT NOT NULL,
            dataset_sha256    TEXT NOT NULL,
            crosscoder_sha256 TEXT,
            b0                REAL NOT NULL,
            true_loss         REAL,
            flops             INTEGER NOT NULL CHECK (flops >= 0),
            bits              REAL NOT NULL,
            wall_seconds      REAL NOT NULL,
            transcript_sha256 TEXT NOT NULL,
            transcript_path   TEXT NOT NULL,
            created           TEXT NOT NULL
        );
        CREATE INDEX runs_by_artefacts ON runs (model_sha256, dataset_sha256);
        CREATE TABLE checks (
            id                INTEGER PRIMARY KEY AUTOINCREMENT,
            transcript_sha256 TEXT NOT NULL,
            verdict           TEXT NOT NULL CHECK (verdict IN ('accepted', 'rejected')),
            reason            TEXT NOT NULL,
            step              INTEGER,
            lemma             TEXT,
            claimed           REAL,
            certified         REAL,
            checker_version   TEXT NOT NULL,
            seconds           REAL NOT NULL,
            created           TEXT NOT NULL
        );
        CREATE INDEX checks_by_transcript ON checks (transcript_sha256);
        CREATE TABLE audit (
            seq       INTEGER PRIMARY KEY AUTOINCREMENT,
            at        TEXT NOT NULL,
            action    TEXT NOT NULL,
            payload   TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash      TEXT NOT NULL UNIQUE
        );
        CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        """,
        """
        CREATE TABLE analyses (
            id                INTEGER PRIMARY KEY AUTOINCREMENT,
            kind              TEXT NOT NULL,
            model_sha256      TEXT NOT NULL,
            crosscoder_sha256 TEXT,
            dataset_sha256    TEXT NOT NULL,
            summary           TEXT NOT NULL,
            created           TEXT NOT NULL
        );
        """,
    ];

    public static int LatestVersion => Migrations.Length;

    public VerifierStore(string path, int busyTimeoutSeconds = 30)
    {
        Path = System.IO.Path.GetFullPath(path);
        if (System.IO.Path.GetDirectoryName(Path) is { } dir) Directory.CreateDirectory(dir);
        _db = new SqliteConnection(new SqliteConnectionStringBuilder
        {
            DataSource = Path, Mode = SqliteOpenMode.ReadWriteCreate, DefaultTimeout = busyTimeoutSeconds, Pooling = false,
        }.ToString());
        Guard(() =>
        {
            _db.Open();
            Exec($"PRAGMA busy_timeout = {busyTimeoutSeconds * 1000};");
            Exec("PRAGMA journal_mode = WAL;");
            Exec("PRAGMA foreign_keys = ON;");
            Migrate();
        });
    }

    void Exec(string sql, SqliteTransaction? tx = null)
    {
        using var c = _db.CreateCommand();
        c.CommandText = sql; c.Transaction = tx;
        c.ExecuteNonQuery();
    }

    T Guard<T>(Func<T> f)
    {
        try { return f(); }
        catch (SqliteException e) when (e.SqliteErrorCode is 5 or 6)
        { throw new StoreException($"{Path}: the database is locked by another process (waited past the busy timeout); try again", e); }
        catch (SqliteException e) when (e.SqliteErrorCode is 26 or 11)
        { throw new StoreException($"{Path}: not a Verifier database, or corrupt ({e.Message})", e); }
    }

    void Guard(Action a) => Guard(() => { a(); return 0; });

    void Migrate()
    {
        // Up to date already: no write lock needed (readers can open a store another process is writing to).
        using (var probe = _db.CreateCommand())
        {
            probe.CommandText = "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations';";
            if (probe.ExecuteScalar() is not null)
            {
                probe.CommandText = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations;";
                if (Convert.ToInt32(probe.ExecuteScalar(), CultureInfo.InvariantCulture) == Migrations.Length) return;
            }
        }
        using var tx = _db.BeginTransaction(deferred: false);
        Exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied TEXT NOT NULL);", tx);
        using var q = _db.CreateCommand();
        q.Transaction = tx;
        q.CommandText = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations;";
        int current = Convert.ToInt32(q.ExecuteScalar(), CultureInfo.InvariantCulture);
        if (current > Migrations.Length)
            throw new StoreException($"{Path}: schema version {current} is newer than this Verifier understands ({Migrations.Length}); upgrade Verifier");
        for (int v = current + 1; v <= Migrations.Length; v++)
        {
            Exec(Migrations[v - 1], tx);
            using var ins = _db.CreateCommand();
            ins.Transaction = tx;
            ins.CommandText = "INSERT INTO schema_migrations (version, applied) VALUES ($v, $at);";
            ins.Parameters.AddWithValue("$v", v);
            ins.Parameters.AddWithValue("$at", Now());
            ins.ExecuteNonQuery();
        }
        tx.Commit();
    }

    public int SchemaVersion => Guard(() =>
    {
        using var q = _db.CreateCommand();
        q.CommandText = "SELECT MAX(version) FROM schema_migrations;";
        return Convert.ToInt32(q.ExecuteScalar(), CultureInfo.InvariantCulture);
    });

    static string Now() => DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ss.fffffffZ", CultureInfo.InvariantCulture);

    /// <summary>The hash of an audit entry: SHA-256 over prev_hash, seq, at, action and payload, one per line.</summary>
    public static string EntryHash(string prevHash, long seq, string at, string action, string payload) =>
        Hashing.Sha256(Encoding.UTF8.GetBytes($"{prevHash}\n{seq}\n{at}\n{action}\n{payload}"));

    /// <summary>Runs <paramref name="write"/> and appends one audit entry, in one IMMEDIATE transaction.</summary>
    T Write<T>(string action, Func<SqliteTransaction, (T Result, object Payload)> write) => Guard(() =>
    {
        using var tx = _db.BeginTransaction(deferred: false);
        var (result, payload) = write(tx);
        string json = JsonSerializer.Serialize(payload, new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower });
        using var last = _db.CreateCommand();
        last.Transaction = tx;
        last.CommandText = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1;";
        long seq = 1; string prev = Genesis;
        using (var r = last.ExecuteReader())
            if (r.Read()) { seq = r.GetInt64(0) + 1; prev = r.GetString(1); }
        string at = Now();
        using var ins = _db.CreateCommand();
        ins.Transaction = tx;
        ins.CommandText = "INSERT INTO audit (seq, at, action, payload, prev_hash, hash) VALUES ($seq, $at, $action, $payload, $prev, $hash);";
        ins.Parameters.AddWithValue("$seq", seq);
        ins.Parameters.AddWithValue("$at", at);
        ins.Parameters.AddWithValue("$action", action);
        ins.Parameters.AddWithValue("$payload", json);
        ins.Parameters.AddWithValue("$prev", prev);
        ins.Parameters.AddWithValue("$hash", EntryHash(prev, seq, at, action, json));
        ins.ExecuteNonQuery();
        tx.Commit();
        return result;
    });

    void Artefact(SqliteTransaction tx, string sha, string kind, string? path)
    {
        using var c = _db.CreateCommand();
        c.Transaction = tx;
        c.CommandText = "INSERT OR IGNORE INTO artefacts (sha256, kind, path) VALUES ($s, $k, $p);";
        c.Parameters.AddWithValue("$s", sha); c.Parameters.AddWithValue("$k", kind); c.Parameters.AddWithValue("$p", (object?)path ?? DBNull.Value);
        c.ExecuteNonQuery();
    }

    public long RecordRun(RunRecord run, IEnumerable<TranscriptArtefact> artefacts) => Write("run", tx =>
    {
        foreach (var a in artefacts) Artefact(tx, a.Sha256, a.Role, a.Path);
        Artefact(tx, run.TranscriptSha256, "transcript", run.TranscriptPath);
        using var c = _db.CreateCommand();
        c.Transaction = tx;
        c.CommandText = """
            INSERT INTO runs (strategy, parameters, model_sha256, dataset_sha256, crosscoder_sha256, b0, true_loss, flops, bits, wall_seconds,
                              transcript_sha256, transcript_path, created)
            VALUES ($st, $pa, $m, $d, $cc, $b0, $tl, $fl, $bi, $ws, $ts, $tp, $cr) RETURNING id;
            """;
        c.Parameters.AddWithValue("$st", run.Strategy); c.Parameters.AddWithValue("$pa", run.Parameters);
        c.Parameters.AddWithValue("$m", run.ModelSha256); c.Parameters.AddWithValue("$d", run.DatasetSha256);
        c.Parameters.AddWithValue("$cc", (object?)run.CrosscoderSha256 ?? DBNull.Value);
        c.Parameters.AddWithValue("$b0", run.B0); c.Parameters.AddWithValue("$tl", (object?)run.TrueLoss ?? DBNull.Value);
        c.Parameters.AddWithValue("$fl", run.Flops); c.Parameters.AddWithValue("$bi", run.Bits); c.Parameters.AddWithValue("$ws", run.WallSeconds);
        c.Parameters.AddWithValue("$ts", run.TranscriptSha256); c.Parameters.AddWithValue("$tp", run.TranscriptPath);
        c.Parameters.AddWithValue("$cr", Now());
        long id = Convert.ToInt64(c.ExecuteScalar(), CultureInfo.InvariantCulture);
        return (id, new { run_id = id, run.Strategy, run.B0, run.Flops, run.TranscriptSha256, run.ModelSha256, run.DatasetSha256 });
    });

    public long RecordCheck(CheckRecord check) => Write("check", tx =>
    {
        using var c = _db.CreateCommand();
        c.Transaction = tx;
        c.CommandText = """
            INSERT INTO checks (transcript_sha256, verdict, reason, step, lemma, claimed, certified, checker_version, seconds, created)
            VALUES ($ts, $v, $r, $s, $l, $cl, $ce, $cv, $sec, $cr) RETURNING id;
            """;
        c.Parameters.AddWithValue("$ts", check.TranscriptSha256); c.Parameters.AddWithValue("$v", check.Accepted ? "accepted" : "rejected");
        c.Parameters.AddWithValue("$r", check.Reason); c.Parameters.AddWithValue("$s", (object?)check.Step ?? DBNull.Value);
        c.Parameters.AddWithValue("$l", (object?)check.Lemma ?? DBNull.Value); c.Parameters.AddWithValue("$cl", (object?)check.Claimed ?? DBNull.Value);
        c.Parameters.AddWithValue("$ce", (object?)check.Certified ?? DBNull.Value); c.Parameters.AddWithValue("$cv", check.CheckerVersion);
        c.Parameters.AddWithValue("$sec", check.Seconds); c.Parameters.AddWithValue("$cr", Now());
        long id = Convert.ToInt64(c.ExecuteScalar(), CultureInfo.InvariantCulture);
        return (id, new { check_id = id, check.TranscriptSha256, verdict = check.Accepted ? "accepted" : "rejected", check.Reason, check.CheckerVersion });
    });

    /// <summary>Records an analysis (interactions, suppression) with its JSON summary.</summary>
    public long RecordAnalysis(string kind, string modelSha, string? crosscoderSha, string datasetSha, string summaryJson) => Write("analysis", tx =>
    {
        using var c = _db.CreateCommand();
        c.Transaction = tx;
        c.CommandText = "INSERT INTO analyses (kind, model_sha256, crosscoder_sha256, dataset_sha256, summary, created) VALUES ($k, $m, $c, $d, $s, $at) RETURNING id;";
        c.Parameters.AddWithValue("$k", kind); c.Parameters.AddWithValue("$m", modelSha);
        c.Parameters.AddWithValue("$c", (object?)crosscoderSha ?? DBNull.Value); c.Parameters.AddWithValue("$d", datasetSha);
        c.Parameters.AddWithValue("$s", summaryJson); c.Parameters.AddWithValue("$at", Now());
        long id = Convert.ToInt64(c.ExecuteScalar(), CultureInfo.InvariantCulture);
        return (id, new { analysis_id = id, kind, model_sha256 = modelSha, dataset_sha256 = datasetSha });
    });

    /// <summary>Runs, newest last, each with the verdict of the latest check of its transcript (null if never checked).</summary>
    public IReadOnlyList<RunRecord> Runs(string? modelSha = null, string? datasetSha = null) => Guard(() =>
    {
        using var c = _db.CreateCommand();
        c.CommandText = """
            SELECT r.id, r.strategy, r.parameters, r.model_sha256, r.dataset_sha256, r.crosscoder_sha256, r.b0, r.true_loss, r.flops, r.bits,
                   r.wall_seconds, r.transcript_sha256, r.transcript_path, r.created,
                   (SELECT k.verdict FROM checks k WHERE k.transcript_sha256 = r.transcript_sha256 ORDER BY k.id DESC LIMIT 1)
            FROM runs r
            WHERE ($m IS NULL OR r.model_sha256 = $m) AND ($d IS NULL OR r.dataset_sha256 = $d)
            ORDER BY r.id;
            """;
        c.Parameters.AddWithValue("$m", (object?)modelSha ?? DBNull.Value);
        c.Parameters.AddWithValue("$d", (object?)datasetSha ?? DBNull.Value);
        var list = new List<RunRecord>();
        using var r = c.ExecuteReader();
        while (r.Read())
            list.Add(new RunRecord(r.GetInt64(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetString(4), r.IsDBNull(5) ? null : r.GetString(5),
                r.GetDouble(6), r.IsDBNull(7) ? null : r.GetDouble(7), r.GetInt64(8), r.GetDouble(9), r.GetDouble(10), r.GetString(11), r.GetString(12),
                r.GetString(13), r.IsDBNull(14) ? null : r.GetString(14)));
        return list;
    });

    public IReadOnlyList<AuditEntry> Audit() => Guard(() =>
    {
        using var c = _db.CreateCommand();
        c.CommandText = "SELECT seq, at, action, payload, prev_hash, hash FROM audit ORDER BY seq;";
        var list = new List<AuditEntry>();
        using var r = c.ExecuteReader();
        while (r.Read()) list.Add(new AuditEntry(r.GetInt64(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetString(4), r.GetString(5)));
        return list;
    });

    /// <summary>Recomputes the chain; returns null when intact, else the first entry that does not follow.</summary>
    public (long Seq, string Problem)? VerifyAudit()
    {
        string prev = Genesis;
        long expected = 1;
        foreach (var e in Audit())
        {
            if (e.Seq != expected) return (e.Seq, $"entry {expected} is missing (found {e.Seq} next)");
            if (e.PrevHash != prev) return (e.Seq, $"prev_hash {e.PrevHash} does not match the hash of entry {e.Seq - 1} ({prev})");
            string h = EntryHash(e.PrevHash, e.Seq, e.At, e.Action, e.Payload);
            if (h != e.Hash) return (e.Seq, $"its content does not hash to its recorded hash (recorded {e.Hash}, content {h}): edited after it was written");
            prev = e.Hash; expected++;
        }
        return null;
    }

    public void Dispose() => _db.Dispose();
}
