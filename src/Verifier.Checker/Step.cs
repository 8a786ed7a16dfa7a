using System.Text.Json;

namespace Verifier.Checker;

/// <summary>One transcript step, parsed strictly (spec/transcript.schema.json: no unknown fields, right types).</summary>
public sealed class Step
{
    public int Id;
    public string Lemma = "";
    public int[] Inputs = [];
    public JsonElement Scope, Claim;
    public JsonElement? Data;
    public long Flops;
    public bool DatasetDependent;

    static readonly HashSet<string> Fields = ["id", "lemma", "inputs", "scope", "claim", "data", "cost"];

    public static Step Parse(JsonElement e, int expectedId)
    {
        if (e.ValueKind != JsonValueKind.Object) throw new CheckFailure("format", $"step {expectedId} is not an object");
        foreach (var p in e.EnumerateObject())
            if (!Fields.Contains(p.Name)) throw new CheckFailure("format", $"step {expectedId}: unknown field '{p.Name}'");
        var s = new Step();
        s.Id = Int(e, "id", expectedId);
        if (s.Id != expectedId) throw new CheckFailure("format", $"step at position {expectedId} has id {s.Id}");
        s.Lemma = Str(e, "lemma", expectedId);
        if (!e.TryGetProperty("inputs", out var inputs) || inputs.ValueKind != JsonValueKind.Array)
            throw new CheckFailure("format", $"step {expectedId}: 'inputs' must be an array");
        s.Inputs = inputs.EnumerateArray().Select(x => x.ValueKind == JsonValueKind.Number && x.TryGetInt32(out int v) ? v
            : throw new CheckFailure("format", $"step {expectedId}: inputs must be integers")).ToArray();
        foreach (int i in s.Inputs)
            if (i < 0 || i >= s.Id) throw new CheckFailure("inputs", $"step {s.Id} ({s.Lemma}) refers to step {i}, which is not an earlier step");
        s.Scope = Obj(e, "scope", expectedId);
        s.Claim = Obj(e, "claim", expectedId);
        if (e.TryGetProperty("data", out var data))
        {
            if (data.ValueKind != JsonValueKind.Object) throw new CheckFailure("format", $"step {expectedId}: 'data' must be an object");
            s.Data = data;
        }
        var cost = Obj(e, "cost", expectedId);
        foreach (var p in cost.EnumerateObject())
            if (p.Name is not ("flops" or "dataset_dependent")) throw new CheckFailure("format", $"step {expectedId}: unknown cost field '{p.Name}'");
        if (!cost.TryGetProperty("flops", out var f) || f.ValueKind != JsonValueKind.Number || !f.TryGetInt64(out s.Flops) || s.Flops < 0)
            throw new CheckFailure("cost", $"step {expectedId}: cost.flops must be a non-negative integer");
        if (!cost.TryGetProperty("dataset_dependent", out var dd) || dd.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            throw new CheckFailure("format", $"step {expectedId}: cost.dataset_dependent must be true or false");
        s.DatasetDependent = dd.GetBoolean();
        return s;
    }

    static int Int(JsonElement e, string name, int id) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int x) ? x
            : throw new CheckFailure("format", $"step {id}: '{name}' must be an integer");
    static string Str(JsonElement e, string name, int id) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()! : throw new CheckFailure("format", $"step {id}: '{name}' must be a string");
    static JsonElement Obj(JsonElement e, string name, int id) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Object ? v : throw new CheckFailure("format", $"step {id}: '{name}' must be an object");

    public double Number(string name) => Num(Claim, name, $"step {Id} ({Lemma}) claim");
    public double[] Vector(string name) => Vec(Claim, name, $"step {Id} ({Lemma}) claim");
    public int ScopeInt(string name) =>
        Scope.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int x) ? x
            : throw new CheckFailure("format", $"step {Id} ({Lemma}): scope.{name} must be an integer");
    public long ScopeLong(string name) =>
        Scope.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out long x) ? x
            : throw new CheckFailure("format", $"step {Id} ({Lemma}): scope.{name} must be an integer");
    public string ScopeStr(string name) =>
        Scope.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()!
            : throw new CheckFailure("format", $"step {Id} ({Lemma}): scope.{name} must be a string");

    public JsonElement DataField(string name) =>
        Data is { } d && d.TryGetProperty(name, out var v) ? v : throw new CheckFailure("format", $"step {Id} ({Lemma}): data.{name} is missing");

    public static double Num(JsonElement e, string name, string where)
    {
        if (!e.TryGetProperty(name, out var v) || v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double x) || !double.IsFinite(x))
            throw new CheckFailure("claim", $"{where}: '{name}' must be a finite number");
        return x;
    }

    public static double[] Vec(JsonElement e, string name, string where)
    {
        if (!e.TryGetProperty(name, out var v) || v.ValueKind != JsonValueKind.Array) throw new CheckFailure("claim", $"{where}: '{name}' must be an array of numbers");
        return v.EnumerateArray().Select(x => x.ValueKind == JsonValueKind.Number && x.TryGetDouble(out double d) && double.IsFinite(d) ? d
            : throw new CheckFailure("claim", $"{where}: '{name}' must hold finite numbers")).ToArray();
    }

    public static double[][] Mat(JsonElement e, string name, string where)
    {
        if (!e.TryGetProperty(name, out var v) || v.ValueKind != JsonValueKind.Array) throw new CheckFailure("claim", $"{where}: '{name}' must be an array of arrays");
        return v.EnumerateArray().Select((row, i) => row.ValueKind == JsonValueKind.Array
            ? row.EnumerateArray().Select(x => x.ValueKind == JsonValueKind.Number && x.TryGetDouble(out double d) && double.IsFinite(d) ? d
                : throw new CheckFailure("claim", $"{where}: '{name}' must hold finite numbers")).ToArray()
            : throw new CheckFailure("claim", $"{where}: '{name}'[{i}] must be an array")).ToArray();
    }
}
