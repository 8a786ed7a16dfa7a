using System.Text.Json;
using System.Text.Json.Nodes;

namespace Verifier.Core;

/// <summary>How a crosscoder turns pre-activations into features.</summary>
public static class CrosscoderModes
{
    /// <summary>f = ReLU(pre), trained with an L1 penalty weighted by decoder norms.</summary>
    public const string ReluL1 = "relu-l1";
    /// <summary>f = the k largest of ReLU(pre), the rest zero: exactly k (or fewer, if fewer are positive).</summary>
    public const string TopK = "topk";
    /// <summary>Trained with the k·B largest over a batch of B tokens; used (and saved) as per-token top-k.</summary>
    public const string BatchTopK = "batch-topk";
    public static readonly IReadOnlyList<string> All = [ReluL1, TopK, BatchTopK];
}

/// <summary>A crosscoder's config.json (spec/crosscoder.md). Weights are stored in model units: the
/// per-site normalisation scales used in training are already folded in, and listed for the record.</summary>
public sealed record CrosscoderConfig(
    int Width, int DModel, IReadOnlyList<string> Sites, string Mode, int? K, double? L1Coefficient,
    IReadOnlyList<double> NormalisationScales, string ModelSha256, string? DataSha256, ulong Seed)
{
    public const string FileName = "config.json";
    public const string Format = "verifier-crosscoder/1";

    public string ToJson()
    {
        var o = new JsonObject
        {
            ["format"] = Format,
            ["width"] = Width,
            ["d_model"] = DModel,
            ["sites"] = new JsonArray(Sites.Select(s => (JsonNode)s).ToArray()),
            ["mode"] = Mode,
            ["k"] = K,
            ["l1_coefficient"] = L1Coefficient,
            ["normalisation_scales"] = new JsonArray(NormalisationScales.Select(s => (JsonNode)s).ToArray()),
            ["normalisation_folded_into_weights"] = true,
            ["model_sha256"] = ModelSha256,
            ["data_sha256"] = DataSha256,
            ["seed"] = Seed,
        };
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    public static CrosscoderConfig Parse(string file, string json)
    {
        var root = StrictJson.Parse(file, json);
        if (root is not JsonObject o) throw new InvalidInputException(file, "JSON", "must be an object");
        InvalidInputException Bad(string field, string problem) => new(file, $"field '{field}'", problem);
        T Get<T>(string field)
        {
            var n = o[field] ?? throw Bad(field, "missing");
            try { return n.GetValue<T>(); }
            catch (Exception e) when (e is InvalidOperationException or FormatException)
            { throw Bad(field, $"expected {typeof(T).Name.ToLowerInvariant()}, got {n.ToJsonString()}"); }
        }
        string format = Get<string>("format");
        if (format != Format) throw Bad("format", $"'{format}' is not '{Format}'");
        bool folded = Get<bool>("normalisation_folded_into_weights");
        if (!folded) throw Bad("normalisation_folded_into_weights", "must be true (weights are stored in model units)");
        var sites = (o["sites"] as JsonArray ?? throw Bad("sites", "expected an array of site names"))
            .Select(n => n?.GetValue<string>() ?? throw Bad("sites", "entries must be strings")).ToList();
        var scales = (o["normalisation_scales"] as JsonArray ?? throw Bad("normalisation_scales", "expected an array of numbers"))
            .Select(n => n?.GetValue<double>() ?? throw Bad("normalisation_scales", "entries must be numbers")).ToList();
        string mode = Get<string>("mode");
        if (!CrosscoderModes.All.Contains(mode)) throw Bad("mode", $"'{mode}' is not one of {string.Join(", ", CrosscoderModes.All)}");
        int? k = o["k"] is null ? null : Get<int>("k");
        double? l1 = o["l1_coefficient"] is null ? null : Get<double>("l1_coefficient");
        var c = new CrosscoderConfig(Get<int>("width"), Get<int>("d_model"), sites, mode, k, l1, scales,
            Get<string>("model_sha256"), o["data_sha256"] is null ? null : Get<string>("data_sha256"), Get<ulong>("seed"));
        c.Validate(file);
        return c;
    }

    public void Validate(string file)
    {
        InvalidInputException Bad(string field, string problem) => new(file, $"field '{field}'", problem);
        if (Width <= 0) throw Bad("width", $"must be positive, got {Width}");
        if (DModel <= 0) throw Bad("d_model", $"must be positive, got {DModel}");
        if (Sites.Count == 0) throw Bad("sites", "must name at least one site");
        if (Sites.Distinct().Count() != Sites.Count) throw Bad("sites", "names a site twice");
        if (NormalisationScales.Count != Sites.Count)
            throw Bad("normalisation_scales", $"has {NormalisationScales.Count} entries for {Sites.Count} sites");
        if (NormalisationScales.Any(s => !(s > 0) || !double.IsFinite(s))) throw Bad("normalisation_scales", "entries must be positive and finite");
        if (Mode == CrosscoderModes.ReluL1 && K is not null) throw Bad("k", "must be null for relu-l1");
        if (Mode != CrosscoderModes.ReluL1 && (K is null || K <= 0 || K > Width)) throw Bad("k", $"must be in [1, width = {Width}] for {Mode}, got {K?.ToString() ?? "null"}");
        if (ModelSha256.Length != 64) throw Bad("model_sha256", "must be a SHA-256 in hex");
    }

    /// <summary>The crosscoder must fit the model: same d_model, and each site one of the model's sites.</summary>
    public void CheckFits(ModelConfig model, string file)
    {
        if (DModel != model.DModel) throw new MismatchException($"{file}: crosscoder d_model {DModel} differs from the model's d_model {model.DModel}");
        var known = model.SiteNames();
        foreach (var s in Sites)
            if (!known.Contains(s)) throw new MismatchException($"{file}: site '{s}' is not a residual site of the model (its sites: {string.Join(", ", known)})");
    }
}

/// <summary>A crosscoder on disk: config.json and crosscoder.safetensors with W_enc [sites, d_model, n],
/// W_dec [n, sites, d_model], b_enc [n], b_dec [sites, d_model], in model units.</summary>
public sealed class CrosscoderWeights
{
    public const string WeightsFileName = "crosscoder.safetensors";

    public CrosscoderConfig Config { get; }
    /// <summary>When loaded from a directory: SHA-256 of exactly the bytes of config.json and crosscoder.safetensors parsed.</summary>
    public string? ConfigSha256 { get; private init; }
    public string? WeightsSha256 { get; private init; }
    public IReadOnlyDictionary<string, NamedTensor> Tensors { get; }
    public NamedTensor this[string name] => Tensors[name];

    public static IEnumerable<(string Name, int[] Shape)> Shapes(CrosscoderConfig c) =>
    [
        ("W_enc", [c.Sites.Count, c.DModel, c.Width]),
        ("W_dec", [c.Width, c.Sites.Count, c.DModel]),
        ("b_enc", [c.Width]),
        ("b_dec", [c.Sites.Count, c.DModel]),
    ];

    public CrosscoderWeights(CrosscoderConfig config, IReadOnlyDictionary<string, NamedTensor> tensors, string source = "<crosscoder>")
    {
        Config = config;
        Tensors = tensors;
        var expected = Shapes(config).ToDictionary(s => s.Name, s => s.Shape);
        var missing = expected.Keys.Where(k => !tensors.ContainsKey(k)).ToList();
        if (missing.Count > 0) throw new InvalidInputException(source, "tensors", $"missing {string.Join(", ", missing.Select(m => $"'{m}'"))}");
        var extra = tensors.Keys.Where(k => !expected.ContainsKey(k)).ToList();
        if (extra.Count > 0) throw new InvalidInputException(source, "tensors", $"unexpected {string.Join(", ", extra.Select(e => $"'{e}'"))}");
        foreach (var (name, shape) in expected)
        {
            var t = tensors[name];
            if (!t.Shape.SequenceEqual(shape))
                throw new InvalidInputException(source, $"tensor '{name}'", $"shape {t.ShapeText}, expected [{string.Join(", ", shape)}] from config.json");
            for (int i = 0; i < t.Data.Length; i++)
                if (!double.IsFinite(t.Data[i])) throw new InvalidInputException(source, $"tensor '{name}'", $"element {i} is {t.Data[i]}; weights must be finite");
        }
    }

    /// <summary>Loads a crosscoder directory. With <paramref name="model"/>, refuses one trained on other
    /// weights (by SHA-256 of model.safetensors) unless <paramref name="allowModelMismatch"/>, and always refuses
    /// one whose sites or d_model do not fit the model.</summary>
    public static CrosscoderWeights Load(string dir, (ModelConfig Config, string Sha256, string Path)? model = null, bool allowModelMismatch = false)
    {
        if (!Directory.Exists(dir)) throw new InvalidInputException(dir, "crosscoder directory", "does not exist");
        string cfgPath = Path.Combine(dir, CrosscoderConfig.FileName);
        if (!File.Exists(cfgPath)) throw new InvalidInputException(cfgPath, "file", "does not exist (a crosscoder directory holds config.json and crosscoder.safetensors)");
        byte[] cfgBytes = File.ReadAllBytes(cfgPath);
        var config = CrosscoderConfig.Parse(cfgPath, ModelConfig.Utf8Text(cfgBytes));
        if (model is { } m)
        {
            config.CheckFits(m.Config, cfgPath);
            if (!allowModelMismatch && !string.Equals(config.ModelSha256, m.Sha256, StringComparison.OrdinalIgnoreCase))
                throw new MismatchException($"{cfgPath}: the crosscoder was trained on model weights with SHA-256 {config.ModelSha256}, " +
                    $"but {m.Path} has {m.Sha256}; pass --allow-model-mismatch to use it anyway");
        }
        string path = Path.Combine(dir, WeightsFileName);
        var file = SafetensorsFile.Read(path);
        var tensors = new Dictionary<string, NamedTensor>(StringComparer.Ordinal);
        foreach (var info in file.Tensors.Values)
            tensors[info.Name] = new NamedTensor(info.Name, info.Shape.Select(s => checked((int)s)).ToArray(), file.ReadDoubles(info.Name),
                info.Dtype == "F64" ? "F64" : "F32");
        return new CrosscoderWeights(config, tensors, path) { ConfigSha256 = Hashing.Sha256(cfgBytes), WeightsSha256 = file.Sha256 };
    }

    public void SaveInto(string dir)
    {
        AtomicOutput.WriteAllText(Path.Combine(dir, CrosscoderConfig.FileName), Config.ToJson(), overwrite: true);
        SafetensorsFile.Write(Path.Combine(dir, WeightsFileName), Tensors.Values);
    }
}
