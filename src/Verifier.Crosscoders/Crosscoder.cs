using TorchSharp;
using TorchSharp.Modules;
using Verifier.Core;
using static TorchSharp.torch;

namespace Verifier.Crosscoders;

/// <summary>A crosscoder in TorchSharp (BOUNDS.md §1): f = act(Σ_s x^s W_enc^s + b_enc), a'^s = f W_dec^s + b_dec^s.
/// Internally the sites are flattened ([S·d] per token) and inputs are multiplied by a per-site scale c_s, so that
/// training sees E‖c_s h^s‖² = d_model; <see cref="ToWeights"/> folds the scales back so the saved weights act on
/// and produce model units.</summary>
public sealed class Crosscoder : IDisposable
{
    public int Sites { get; }
    public int DModel { get; }
    public int Width { get; }
    public string Mode { get; }
    public int K { get; }

    internal readonly Parameter WEnc;   // [S·d, n]
    internal readonly Parameter WDec;   // [n, S·d]
    internal readonly Parameter BEnc;   // [n]
    internal readonly Parameter BDec;   // [S·d]
    readonly Tensor _scale;             // [S·d], c_s repeated d_model times
    public double[] Scales { get; }

    public IEnumerable<Parameter> Parameters => [WEnc, WDec, BEnc, BDec];

    Crosscoder(int sites, int dModel, int width, string mode, int k, double[] scales, Tensor wEnc, Tensor wDec, Tensor bEnc, Tensor bDec)
    {
        if (!CrosscoderModes.All.Contains(mode)) throw new ArgumentException($"unknown mode '{mode}'");
        if (mode != CrosscoderModes.ReluL1 && (k <= 0 || k > width)) throw new ArgumentException($"k must be in [1, {width}]");
        Sites = sites; DModel = dModel; Width = width; Mode = mode; K = k; Scales = scales;
        WEnc = new Parameter(wEnc, true); WDec = new Parameter(wDec, true);
        BEnc = new Parameter(bEnc, true); BDec = new Parameter(bDec, true);
        _scale = tensor(scales.SelectMany(s => Enumerable.Repeat((float)s, dModel)).ToArray());
    }

    /// <summary>Fresh weights for training: decoder rows random with norm <paramref name="decoderNorm"/> per site,
    /// encoder its transpose, encoder bias zero, decoder bias <paramref name="decoderBias"/> (normalised units).</summary>
    public static Crosscoder Initialise(int sites, int dModel, int width, string mode, int k, double[] scales,
        Tensor decoderBias, double decoderNorm, ulong seed)
    {
        using var g = new Generator(seed);
        Tensor enc, dec, bEnc, bDec;
        using (var scope = NewDisposeScope())
        {
            var wDec = randn([width, sites, dModel], generator: g);
            wDec = wDec / wDec.pow(2).sum(2, keepdim: true).sqrt() * decoderNorm;
            dec = wDec.reshape(width, sites * dModel).contiguous().MoveToOuterDisposeScope();
            enc = dec.t().contiguous().clone().MoveToOuterDisposeScope();
            bEnc = zeros(width).MoveToOuterDisposeScope();
            bDec = decoderBias.reshape(sites * dModel).to(ScalarType.Float32).clone().MoveToOuterDisposeScope();
        }
        return new Crosscoder(sites, dModel, width, mode, k, scales, enc, dec, bEnc, bDec);
    }

    /// <summary>A saved crosscoder (model units: all scales 1).</summary>
    public static Crosscoder FromWeights(CrosscoderWeights w)
    {
        var c = w.Config;
        int S = c.Sites.Count, d = c.DModel, n = c.Width;
        Tensor T(string name, long[] shape) => tensor(w[name].Data.Select(x => (float)x).ToArray(), shape);
        using var encRaw = T("W_enc", [S, d, n]);
        using var decRaw = T("W_dec", [n, S, d]);
        return new Crosscoder(S, d, n, c.Mode, c.K ?? 0, Enumerable.Repeat(1.0, S).ToArray(),
            encRaw.reshape(S * d, n).contiguous(), decRaw.reshape(n, S * d).contiguous(), T("b_enc", [n]), T("b_dec", [S * d]));
    }

    /// <summary>Model-unit activations [B, S, d] → normalised, flattened [B, S·d].</summary>
    public Tensor Normalise(Tensor x) => x.reshape(x.shape[0], Sites * DModel) * _scale;

    public Tensor PreActivations(Tensor xn) => xn.matmul(WEnc) + BEnc;

    /// <summary>ReLU, then for top-k modes keep the k largest per token (or k·B over the batch for batch-topk
    /// during training). At most k features are non-zero per token in topk mode.</summary>
    public Tensor Activate(Tensor pre, bool training = false)
    {
        var relu = nn.functional.relu(pre);
        if (Mode == CrosscoderModes.ReluL1) return relu;
        if (Mode == CrosscoderModes.BatchTopK && training)
        {
            var flat = relu.reshape(-1);
            var (vals, idx) = flat.topk((int)Math.Min((long)K * pre.shape[0], flat.shape[0]));
            return zeros_like(flat).scatter(0, idx, vals).reshape(pre.shape);
        }
        var (v, i) = relu.topk(K, dim: -1);
        return zeros_like(relu).scatter(-1, i, v);
    }

    /// <summary>Normalised reconstruction [B, S·d].</summary>
    public Tensor DecodeNormalised(Tensor f) => f.matmul(WDec) + BDec;

    /// <summary>Features [B, n] and reconstruction [B, S, d] in model units, for activations [B, S, d] in model units.</summary>
    public (Tensor Features, Tensor Reconstruction) Run(Tensor x)
    {
        var f = Activate(PreActivations(Normalise(x)));
        var r = (DecodeNormalised(f) / _scale).reshape(x.shape[0], Sites, DModel);
        return (f, r);
    }

    /// <summary>Per-feature Σ_s ‖W_dec^s[i]‖ in normalised units, [n].</summary>
    public Tensor DecoderNormSums() => WDec.reshape(Width, Sites, DModel).pow(2).sum(2).clamp_min(1e-24).sqrt().sum(1);

    /// <summary>The weights in model units (scales folded in), ready to save.</summary>
    public CrosscoderWeights ToWeights(CrosscoderConfig config)
    {
        if (config.Width != Width || config.Sites.Count != Sites || config.DModel != DModel) throw new ArgumentException("config does not match the crosscoder");
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var scale = _scale.to(ScalarType.Float64);
        var enc = (WEnc.detach().to(ScalarType.Float64) * scale.unsqueeze(1)).reshape(Sites, DModel, Width);   // c_s W_enc^s
        var dec = (WDec.detach().to(ScalarType.Float64) / scale.unsqueeze(0)).reshape(Width, Sites, DModel);   // W_dec^s / c_s
        var bdec = (BDec.detach().to(ScalarType.Float64) / scale).reshape(Sites, DModel);                       // b_dec^s / c_s
        NamedTensor N(string name, Tensor t, int[] shape) =>
            new(name, shape, t.contiguous().data<double>().ToArray().Select(x => (double)(float)x).ToArray(), "F32");
        var tensors = new Dictionary<string, NamedTensor>(StringComparer.Ordinal)
        {
            ["W_enc"] = N("W_enc", enc, [Sites, DModel, Width]),
            ["W_dec"] = N("W_dec", dec, [Width, Sites, DModel]),
            ["b_enc"] = N("b_enc", BEnc.detach().to(ScalarType.Float64), [Width]),
            ["b_dec"] = N("b_dec", bdec, [Sites, DModel]),
        };
        return new CrosscoderWeights(config with { NormalisationScales = Scales }, tensors);
    }

    public void Dispose()
    {
        foreach (var p in Parameters) p.Dispose();
        _scale.Dispose();
    }
}
