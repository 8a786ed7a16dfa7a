namespace Verifier.Core;

/// <summary>A model on disk: a directory with config.json (TransformerLens field names) and model.safetensors
/// (TransformerLens tensor names and shapes). Values are held as float64, exactly as stored.</summary>
public sealed class ModelWeights
{
    public const string WeightsFileName = "model.safetensors";

    public ModelConfig Config { get; }
    public IReadOnlyDictionary<string, NamedTensor> Tensors { get; }
    /// <summary>Where the weights came from (the safetensors path when loaded), for messages.</summary>
    public string Source { get; }
    /// <summary>When loaded from a directory: SHA-256 of exactly the bytes of config.json and model.safetensors that were
    /// parsed (so a checker never certifies weights it did not read under a hash it did not compute from them).</summary>
    public string? ConfigSha256 { get; private init; }
    public string? WeightsSha256 { get; private init; }

    /// <summary>Bias tensors the state dict did not hold, read as zeros (<see cref="ModelConfig.IsOptionalBias"/>).</summary>
    public IReadOnlyList<string> ZeroFilledBiases { get; }

    public ModelWeights(ModelConfig config, IReadOnlyDictionary<string, NamedTensor> tensors, string source = "<weights>")
    {
        Config = config;
        Source = source;
        var absent = config.ParameterShapes().Where(p => !tensors.ContainsKey(p.Name) && config.IsOptionalBias(p.Name)).ToList();
        if (absent.Count > 0)
        {
            var filled = new Dictionary<string, NamedTensor>(tensors, StringComparer.Ordinal);
            foreach (var (name, shape) in absent) filled[name] = new NamedTensor(name, shape, new double[shape.Aggregate(1, (a, b) => a * b)], "F32");
            tensors = filled;
        }
        Tensors = tensors;
        ZeroFilledBiases = absent.Select(a => a.Name).ToArray();
        Validate(source);
    }

    public NamedTensor this[string name] => Tensors[name];

    void Validate(string source)
    {
        var expected = Config.ParameterShapes().ToDictionary(p => p.Name, p => p.Shape);
        var missing = expected.Keys.Where(k => !Tensors.ContainsKey(k)).ToList();
        if (missing.Count > 0)
            throw new InvalidInputException(source, "tensors", $"missing {string.Join(", ", missing.Select(m => $"'{m}' {Fmt(expected[m])}"))}");
        var extra = Tensors.Keys.Where(k => !expected.ContainsKey(k) && !Config.IsIgnorableBuffer(k)).ToList();
        if (extra.Count > 0)
            throw new InvalidInputException(source, "tensors", $"unexpected {string.Join(", ", extra.Select(e => $"'{e}'"))} (not part of this configuration)");
        foreach (var (name, shape) in expected)
        {
            var t = Tensors[name];
            if (!t.Shape.SequenceEqual(shape))
                throw new InvalidInputException(source, $"tensor '{name}'", $"shape {t.ShapeText}, expected {Fmt(shape)} from config.json");
            for (int i = 0; i < t.Data.Length; i++)
                if (!double.IsFinite(t.Data[i]))
                    throw new InvalidInputException(source, $"tensor '{name}'", $"element {i} is {t.Data[i]}; weights must be finite");
        }
    }

    static string Fmt(int[] shape) => "[" + string.Join(", ", shape) + "]";

    public static ModelWeights Load(string dir)
    {
        if (!Directory.Exists(dir)) throw new InvalidInputException(dir, "model directory", "does not exist");
        var config = ModelConfig.Load(dir, out string configSha);
        string path = Path.Combine(dir, WeightsFileName);
        var file = SafetensorsFile.Read(path);
        var tensors = new Dictionary<string, NamedTensor>(StringComparer.Ordinal);
        foreach (var info in file.Tensors.Values)
        {
            if (config.IsIgnorableBuffer(info.Name)) continue;
            if (info.Shape.Any(s => s > int.MaxValue))
                throw new InvalidInputException(path, $"tensor '{info.Name}'", "a dimension exceeds 2^31");
            tensors[info.Name] = new NamedTensor(info.Name, info.Shape.Select(s => (int)s).ToArray(), file.ReadDoubles(info.Name),
                info.Dtype == "F64" ? "F64" : "F32");
        }
        return new ModelWeights(config, tensors, path) { ConfigSha256 = configSha, WeightsSha256 = file.Sha256 };
    }

    /// <summary>Writes config.json and model.safetensors into <paramref name="dir"/> (which must exist), replacing them:
    /// the caller owns the directory (command outputs are built in a temporary and published exclusively).</summary>
    public void SaveInto(string dir)
    {
        AtomicOutput.WriteAllText(Path.Combine(dir, ModelConfig.FileName), Config.ToJson(), overwrite: true);
        SafetensorsFile.Write(Path.Combine(dir, WeightsFileName), Tensors.Values);
    }

    /// <summary>Random weights (normal with the given std), for tests and initialisation.</summary>
    public static ModelWeights Random(ModelConfig config, ulong seed, double std = 0.2, string dtype = "F64")
    {
        var rng = new Rng(seed);
        var tensors = new Dictionary<string, NamedTensor>(StringComparer.Ordinal);
        foreach (var (name, shape) in config.ParameterShapes())
        {
            long n = shape.Aggregate(1L, (a, b) => a * b);
            var data = new double[n];
            for (long i = 0; i < n; i++)
            {
                // Box-Muller from two uniforms.
                double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
                data[i] = std * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
            }
            // Normalisation gains start near 1 (as TransformerLens initialises them), so a random model is a plausible one.
            if (name.EndsWith(".w", StringComparison.Ordinal)) for (long i = 0; i < n; i++) data[i] += 1;
            tensors[name] = new NamedTensor(name, shape, data, dtype);
        }
        return new ModelWeights(config, tensors);
    }
}
