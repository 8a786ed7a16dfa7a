using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.Data.Sqlite;

namespace Verifier.Store;

/// <summary>The tables the audit chain covers, their key and their columns (spec/store.md, "What the chain covers"),
/// and the canonical JSON of a row: the columns in this order, each value as SQLite stores it.</summary>
static class Rows
{
    public sealed record Table(string Name, string Key, string[] Columns);

    public static readonly Table Artefacts = new("artefacts", "sha256", ["sha256", "kind", "path"]);
    public static readonly Table Runs = new("runs", "id",
        ["id", "strategy", "parameters", "model_sha256", "dataset_sha256", "crosscoder_sha256", "b0", "true_loss", "flops", "bits",
         "wall_seconds", "transcript_sha256", "transcript_path", "created"]);
    public static readonly Table Checks = new("checks", "id",
        ["id", "transcript_sha256", "verdict", "reason", "step", "lemma", "claimed", "certified", "checker_version", "seconds", "created"]);
    public static readonly Table Analyses = new("analyses", "id", ["id", "kind", "model_sha256", "crosscoder_sha256", "dataset_sha256", "summary", "created"]);
    public static readonly Table CheckAccuracy = new("check_accuracy", "check_id", ["check_id", "errors", "positions", "accuracy_lb"]);

    /// <summary>Every covered table, in the order verification reports them.</summary>
    public static readonly Table[] All = [Runs, Checks, CheckAccuracy, Analyses, Artefacts];

    public static Table ByName(string name) => All.FirstOrDefault(t => t.Name == name)
        ?? throw new ArgumentException($"'{name}' is not a table the audit chain covers", nameof(name));

    /// <summary>A key as text: an integer id in decimal, a sha256 as itself.</summary>
    public static string KeyText(object? value) => value switch
    {
        long l => l.ToString(CultureInfo.InvariantCulture),
        string s => s,
        null or DBNull => "NULL",
        _ => Convert.ToString(value, CultureInfo.InvariantCulture) ?? "?",
    };

    /// <summary>Reads one row per key (all rows when <paramref name="key"/> is null) as (key, column values) in column order.</summary>
    public static IEnumerable<(string Key, object?[] Values)> Read(SqliteConnection db, SqliteTransaction? tx, Table t, object? key = null)
    {
        using var c = db.CreateCommand();
        c.Transaction = tx;
        c.CommandText = $"SELECT {string.Join(", ", t.Columns)} FROM {t.Name}" + (key is null ? "" : $" WHERE {t.Key} = $k") + $" ORDER BY {t.Key};";
        if (key is not null) c.Parameters.AddWithValue("$k", key);
        using var r = c.ExecuteReader();
        while (r.Read())
        {
            var values = new object?[t.Columns.Length];
            for (int i = 0; i < values.Length; i++) values[i] = r.IsDBNull(i) ? null : r.GetValue(i);
            yield return (KeyText(values[0]), values);
        }
    }

    /// <summary>Writes a value as SQLite holds it: NULL, an integer, a finite real, text; a non-finite real as {"real":"∞"},
    /// a blob as {"blob":"hex"} (neither is ever written by Verifier; both stay distinguishable from text).</summary>
    public static void WriteValue(Utf8JsonWriter w, object? v)
    {
        switch (v)
        {
            case null: w.WriteNullValue(); break;
            case long l: w.WriteNumberValue(l); break;
            case double d when double.IsFinite(d): w.WriteNumberValue(d); break;
            case double d:
                w.WriteStartObject(); w.WriteString("real", d.ToString("R", CultureInfo.InvariantCulture)); w.WriteEndObject(); break;
            case string s: w.WriteStringValue(s); break;
            case byte[] b:
                w.WriteStartObject(); w.WriteString("blob", Convert.ToHexString(b)); w.WriteEndObject(); break;
            default: throw new ArgumentException($"SQLite value of unexpected type {v.GetType()}", nameof(v));
        }
    }

    public static void WriteRow(Utf8JsonWriter w, Table t, object?[] values)
    {
        w.WriteStartObject();
        w.WriteString("table", t.Name);
        w.WriteStartObject("row");
        for (int i = 0; i < t.Columns.Length; i++) { w.WritePropertyName(t.Columns[i]); WriteValue(w, values[i]); }
        w.WriteEndObject();
        w.WriteEndObject();
    }

    /// <summary>The value as the canonical JSON text (for messages and comparison).</summary>
    public static string Text(object? v)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms)) WriteValue(w, v);
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    /// <summary>True when the recorded JSON value is the value the store holds.</summary>
    public static bool Same(JsonElement recorded, object? v) => v switch
    {
        null => recorded.ValueKind == JsonValueKind.Null,
        long l => recorded.ValueKind == JsonValueKind.Number && recorded.TryGetInt64(out long x) && x == l,
        double d when double.IsFinite(d) => recorded.ValueKind == JsonValueKind.Number && recorded.TryGetDouble(out double x)
                                            && BitConverter.DoubleToInt64Bits(x) == BitConverter.DoubleToInt64Bits(d),
        string s => recorded.ValueKind == JsonValueKind.String && recorded.GetString() == s,
        _ => recorded.GetRawText() == Text(v),
    };
}
