using Verifier.Bounds;
using Verifier.Core;

namespace Verifier.TestSupport;

/// <summary>A random small model, dataset and (on request) crosscoder on disk, seeded; shared by the Bounds and
/// Checker tests (linked into both projects from tests/Shared).</summary>
sealed class RandomWorld : IDisposable
{
    public string Dir { get; } = Path.Combine(Path.GetTempPath(), $"verifier-bound-{Guid.NewGuid():N}");
    public ModelWeights Model { get; }
    public TokenDataset Data { get; }
    public string DataPath => Path.Combine(Dir, "data.jsonl");
    public string CcDir => Path.Combine(Dir, "cc");

    public RandomWorld(ulong seed, bool attnOnly = false, int layers = 1, double std = 0.4)
    {
        var r = new Rng(seed);
        int vocab = 3 + r.NextInt(5), nctx = 2 + r.NextInt(3);
        var config = ModelConfig.Create(2 + r.NextInt(5), 1 + r.NextInt(2), 1 + r.NextInt(3), 2 + r.NextInt(5), layers, nctx, vocab, vocab, attnOnly);
        Model = ModelWeights.Random(config, seed, std);
        Directory.CreateDirectory(Dir);
        Model.SaveInto(Dir);
        Model = ModelWeights.Load(Dir);   // stored as F64: exactly what the bound sees
        var seqs = new List<Sequence>();
        int count = 1 + r.NextInt(6);
        for (int i = 0; i < count; i++)
        {
            int T = 1 + r.NextInt(nctx);
            var tokens = Enumerable.Range(0, T).Select(_ => r.NextInt(vocab)).ToArray();
            var labels = Enumerable.Range(0, T).Select(t => t == T - 1 || r.NextInt(2) == 0 ? r.NextInt(vocab) : -1).ToArray();
            seqs.Add(new Sequence(tokens, labels));
        }
        Data = new TokenDataset(seqs);
        Data.Save(DataPath);
    }

    public CrosscoderWeights SaveCrosscoder(CrosscoderWeights cc)
    {
        Directory.CreateDirectory(CcDir);
        cc.SaveInto(CcDir);
        return CrosscoderWeights.Load(CcDir);
    }

    public CrosscoderWeights RandomCrosscoder(ulong seed, int width, int k)
    {
        var c = Model.Config;
        var cfg = new CrosscoderConfig(width, c.DModel, c.SiteNames(), CrosscoderModes.TopK, Math.Min(k, width), null,
            Enumerable.Repeat(1.0, c.SiteNames().Count).ToArray(), Hashing.Sha256File(Path.Combine(Dir, ModelWeights.WeightsFileName)), null, 0);
        var r = new Rng(seed);
        var tensors = CrosscoderWeights.Shapes(cfg).ToDictionary(s => s.Name, s =>
            new NamedTensor(s.Name, s.Shape, Enumerable.Range(0, s.Shape.Aggregate(1, (a, b) => a * b)).Select(_ => (r.NextDouble() - 0.5) * 0.8).ToArray(), "F64"));
        return SaveCrosscoder(new CrosscoderWeights(cfg, tensors));
    }

    /// <summary>W_enc = [I, −I], W_dec = [I; −I]: a'^s = ReLU(h) − ReLU(−h) = h at every site, exactly.</summary>
    public CrosscoderWeights IdentityCrosscoder()
    {
        var c = Model.Config; var sites = c.SiteNames(); int S = sites.Count, d = c.DModel, n = 2 * S * d;
        var enc = new double[S * d * n]; var dec = new double[n * S * d];
        for (int j = 0; j < S * d; j++) { enc[j * n + j] = 1; enc[j * n + S * d + j] = -1; dec[j * S * d + j] = 1; dec[(S * d + j) * S * d + j] = -1; }
        var cfg = new CrosscoderConfig(n, d, sites, CrosscoderModes.ReluL1, null, 1.0, Enumerable.Repeat(1.0, S).ToArray(),
            Hashing.Sha256File(Path.Combine(Dir, ModelWeights.WeightsFileName)), null, 0);
        return SaveCrosscoder(new CrosscoderWeights(cfg, new Dictionary<string, NamedTensor>
        {
            ["W_enc"] = new("W_enc", [S, d, n], enc, "F64"), ["W_dec"] = new("W_dec", [n, S, d], dec, "F64"),
            ["b_enc"] = new("b_enc", [n], new double[n], "F64"), ["b_dec"] = new("b_dec", [S, d], new double[S * d], "F64"),
        }));
    }

    /// <summary>Brute force in blocks of <paramref name="block"/> sequences (2 by default, so that a world's few sequences
    /// make several BFB steps).</summary>
    public BoundResult Bound(string strategy, CrosscoderWeights? cc = null, int clusters = 1, bool computeTrueLoss = true, int block = 2) =>
        BoundProgram.Run(strategy, new BoundInputs(Model, Dir, Data, DataPath, cc, cc is null ? null : CcDir), Path.Combine(Dir, strategy + ".json"),
            computeTrueLoss, clusters: clusters, overwrite: true, block: block);

    public void Dispose() => Directory.Delete(Dir, true);
}
