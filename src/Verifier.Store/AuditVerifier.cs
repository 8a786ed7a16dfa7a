using System.Globalization;
using System.Text.Json;
using Microsoft.Data.Sqlite;

namespace Verifier.Store;

/// <summary>One way the store departs from its audit chain: an entry (<see cref="Seq"/>) that does not follow, or a row
/// (<see cref="Table"/>, <see cref="Key"/>, <see cref="Column"/>) that differs from, is missing from or is not covered by it.</summary>
public sealed record AuditProblem(long? Seq, string? Table, string? Key, string? Column, string Message);

/// <summary>What <c>audit verify</c> found. <see cref="Head"/> is the last entry read (seq 0 and 64 zeros for an empty chain);
/// <see cref="LegacyEntries"/> counts entries written before schema 3, whose payloads hold only some columns of their rows
/// (those rows are covered in full by the <see cref="MigrationEntry"/> that adopted them at the upgrade).</summary>
public sealed record AuditReport(string Path, long Entries, AuditHead Head, long LegacyEntries, long? MigrationEntry, long RowsCovered,
    IReadOnlyList<AuditProblem> Problems)
{
    public bool Intact => Problems.Count == 0;
}

/// <summary>Recomputes the hash chain, re-derives every covered row from the entries that recorded it and compares it with the
/// tables; then checks a head the user kept. One pass over the chain and one over each table: linear in the store's size.</summary>
static class AuditVerifier
{
    /// <summary>Pre-schema-3 actions: the table they wrote and the payload field naming the row's id.</summary>
    static readonly Dictionary<string, (Rows.Table Table, string IdField)> Legacy = new()
    {
        ["run"] = (Rows.Runs, "run_id"), ["check"] = (Rows.Checks, "check_id"), ["analysis"] = (Rows.Analyses, "analysis_id"),
    };

    public static AuditReport Verify(SqliteConnection db, SqliteTransaction tx, string path, AuditHead? noted)
    {
        var problems = new List<AuditProblem>();
        var full = new Dictionary<(string Table, string Key), (long Seq, JsonElement Row)>();
        var partial = new List<(long Seq, Rows.Table Table, string Key, JsonElement Payload)>();
        string prev = VerifierStore.Genesis;
        long expected = 1, legacy = 0, entries = 0;
        long? migration = null, firstCovering = null;
        string? hashAtNoted = noted is { Seq: 0 } ? VerifierStore.Genesis : null;
        var head = new AuditHead(0, VerifierStore.Genesis);

        using (var c = db.CreateCommand())
        {
            c.Transaction = tx;
            c.CommandText = "SELECT seq, at, action, payload, prev_hash, hash FROM audit ORDER BY seq;";
            using var r = c.ExecuteReader();
            while (r.Read())
            {
                var e = new AuditEntry(r.GetInt64(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetString(4), r.GetString(5));
                entries++;
                string? broken = null;
                if (e.Seq != expected) broken = $"audit entry {expected} is missing (found {e.Seq} next)";
                else if (e.PrevHash != prev) broken = $"audit entry {e.Seq}: prev_hash {e.PrevHash} does not match the hash of entry {e.Seq - 1} ({prev})";
                else if (VerifierStore.EntryHash(e.PrevHash, e.Seq, e.At, e.Action, e.Payload) is var h && h != e.Hash)
                    broken = $"audit entry {e.Seq}: its content does not hash to its recorded hash (recorded {e.Hash}, content {h}): edited after it was written";
                if (broken is not null)
                {
                    // Nothing after a break is vouched for; the rows are not compared against a chain that does not hold.
                    problems.Add(new AuditProblem(e.Seq, null, null, null, broken));
                    while (r.Read()) entries++;
                    return new AuditReport(path, entries, head, legacy, migration, 0, problems);
                }
                if (noted is not null && e.Seq == noted.Seq) hashAtNoted = e.Hash;
                Collect(e, full, partial, problems, ref legacy, ref migration, ref firstCovering);
                prev = e.Hash; expected++;
                head = new AuditHead(e.Seq, e.Hash);
            }
        }
        if (legacy > 0 && migration is null)
            problems.Add(new AuditProblem(null, null, null, null,
                $"{legacy} audit entries predate schema {VerifierStore.CoveringVersion} but no 'migrate' entry adopts their rows"));

        var tables = new Dictionary<string, Dictionary<string, object?[]>>();
        foreach (var t in Rows.All)
        {
            var rows = tables[t.Name] = new Dictionary<string, object?[]>();
            foreach (var (key, values) in Rows.Read(db, tx, t))
            {
                rows[key] = values;
                if (!full.TryGetValue((t.Name, key), out var rec))
                {
                    problems.Add(new AuditProblem(null, t.Name, key, null,
                        $"{t.Name} {t.Key} {key} is not covered by the audit chain: it was inserted behind the tool's back"));
                    continue;
                }
                for (int i = 0; i < t.Columns.Length; i++)
                    if (!rec.Row.TryGetProperty(t.Columns[i], out var v))
                        problems.Add(new AuditProblem(rec.Seq, t.Name, key, t.Columns[i],
                            $"{t.Name} {t.Key} {key} column {t.Columns[i]}: audit entry {rec.Seq} does not record it"));
                    else if (!Rows.Same(v, values[i]))
                        problems.Add(new AuditProblem(rec.Seq, t.Name, key, t.Columns[i],
                            $"{t.Name} {t.Key} {key} column {t.Columns[i]} is {Rows.Text(values[i])} but audit entry {rec.Seq} recorded {v.GetRawText()}: changed behind the tool's back"));
            }
            foreach (var ((table, key), rec) in full)
                if (table == t.Name && !rows.ContainsKey(key))
                    problems.Add(new AuditProblem(rec.Seq, t.Name, key, null,
                        $"{t.Name} {t.Key} {key}, recorded by audit entry {rec.Seq}, is missing from the table: deleted behind the tool's back"));
        }
        // Entries from before schema 3 vouch for the columns they hold (b₀, FLOPs, strategy, hashes; verdict, reason).
        foreach (var (seq, t, key, payload) in partial)
        {
            if (!tables[t.Name].TryGetValue(key, out var values))
            {
                problems.Add(new AuditProblem(seq, t.Name, key, null,
                    $"{t.Name} {t.Key} {key}, recorded by audit entry {seq}, is missing from the table: deleted behind the tool's back"));
                continue;
            }
            for (int i = 1; i < t.Columns.Length; i++)
                if (payload.TryGetProperty(t.Columns[i], out var v) && !Rows.Same(v, values[i]))
                    problems.Add(new AuditProblem(seq, t.Name, key, t.Columns[i],
                        $"{t.Name} {t.Key} {key} column {t.Columns[i]} is {Rows.Text(values[i])} but audit entry {seq} recorded {v.GetRawText()}: changed behind the tool's back"));
        }
        // The first bad entry first; rows no entry covers after those.
        problems = [.. problems.OrderBy(p => p.Seq ?? long.MaxValue)];

        if (noted is not null)
        {
            if (noted.Seq > head.Seq)
                problems.Insert(0, new AuditProblem(noted.Seq, null, null, null,
                    $"the noted head {noted.Seq}:{noted.Hash} is not in the chain, which ends at entry {head.Seq}: entries were removed, " +
                    "or the file was replaced, truncated or rolled back (a lost -wal)"));
            else if (hashAtNoted != noted.Hash)
                problems.Insert(0, new AuditProblem(noted.Seq, null, null, null,
                    $"audit entry {noted.Seq} has hash {hashAtNoted}, not the noted {noted.Hash}: the chain was rewritten or replaced"));
        }
        return new AuditReport(path, entries, head, legacy, migration, full.Count, problems);
    }

    static void Collect(AuditEntry e, Dictionary<(string, string), (long, JsonElement)> full, List<(long, Rows.Table, string, JsonElement)> partial,
        List<AuditProblem> problems, ref long legacy, ref long? migration, ref long? firstCovering)
    {
        JsonElement root;
        try
        {
            using var doc = JsonDocument.Parse(e.Payload);
            root = doc.RootElement.Clone();
        }
        catch (JsonException x)
        {
            problems.Add(new AuditProblem(e.Seq, null, null, null, $"audit entry {e.Seq}: its payload is not JSON ({x.Message})"));
            return;
        }
        if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("format", out var f) && f.ValueKind == JsonValueKind.Number)
        {
            if (!f.TryGetInt32(out int format) || format != VerifierStore.CoveringVersion)
            {
                problems.Add(new AuditProblem(e.Seq, null, null, null, $"audit entry {e.Seq}: payload format {f.GetRawText()} is not one this Verifier knows"));
                return;
            }
            firstCovering ??= e.Seq;
            if (e.Action == "migrate") migration ??= e.Seq;
            if (!root.TryGetProperty("rows", out var rows) || rows.ValueKind != JsonValueKind.Array)
            {
                problems.Add(new AuditProblem(e.Seq, null, null, null, $"audit entry {e.Seq}: payload has no 'rows' array"));
                return;
            }
            foreach (var item in rows.EnumerateArray())
            {
                if (!item.TryGetProperty("table", out var tn) || tn.ValueKind != JsonValueKind.String
                    || Rows.All.FirstOrDefault(t => t.Name == tn.GetString()) is not { } t
                    || !item.TryGetProperty("row", out var row) || !row.TryGetProperty(t.Key, out var k))
                {
                    problems.Add(new AuditProblem(e.Seq, null, null, null, $"audit entry {e.Seq}: a row without a known 'table' and its key: {item.GetRawText()}"));
                    continue;
                }
                string key = k.ValueKind == JsonValueKind.Number && k.TryGetInt64(out long id) ? id.ToString(CultureInfo.InvariantCulture) : k.ValueKind == JsonValueKind.String ? k.GetString()! : k.GetRawText();
                if (full.TryGetValue((t.Name, key), out var earlier))
                    problems.Add(new AuditProblem(e.Seq, t.Name, key, null,
                        $"audit entry {e.Seq} records {t.Name} {t.Key} {key} again (audit entry {earlier.Item1} recorded it first)"));
                else full[(t.Name, key)] = (e.Seq, row);
            }
            return;
        }
        // Written before schema 3: a summary naming the row by id.
        legacy++;
        if (firstCovering is not null)
            problems.Add(new AuditProblem(e.Seq, null, null, null,
                $"audit entry {e.Seq} is in the pre-schema-{VerifierStore.CoveringVersion} format but follows schema-{VerifierStore.CoveringVersion} entry {firstCovering}"));
        else if (!Legacy.TryGetValue(e.Action, out var l) || root.ValueKind != JsonValueKind.Object
                 || !root.TryGetProperty(l.IdField, out var idv) || idv.ValueKind != JsonValueKind.Number || !idv.TryGetInt64(out long legacyId))
            problems.Add(new AuditProblem(e.Seq, null, null, null, $"audit entry {e.Seq}: action '{e.Action}' with a payload that names no row"));
        else partial.Add((e.Seq, l.Table, legacyId.ToString(CultureInfo.InvariantCulture), root));
    }
}
