using Verifier.Core;

namespace Verifier.TestSupport;

/// <summary>One configuration per TransformerLens family a researcher has on disk (shapes shrunk): the table every
/// component's architecture tests run over (linked into the Core, Model and Cli test projects from tests/Families).</summary>
static class Families
{
    static ModelConfig Basic(int layers = 1, bool attnOnly = false, int nCtx = 5) => ModelConfig.Create(8, 2, 4, 12, layers, nCtx, 7, 7, attnOnly);

    public static IReadOnlyList<(string Name, ModelConfig Config)> Table =>
    [
        ("gpt2-like", Basic(2) with { Normalization = NormKind.LN, Act = ActKind.GeluNew }),
        ("gelu-1l", Basic(1) with { Normalization = NormKind.LN, Act = ActKind.Gelu }),
        ("attn-only-2l", Basic(2, attnOnly: true) with { Normalization = NormKind.LN }),
        ("pythia-like", Basic(2) with { Normalization = NormKind.LN, Act = ActKind.Gelu, Rotary = true, RotaryDim = 2, ParallelAttnMlp = true }),
        ("gptj-like", Basic(1) with { Normalization = NormKind.LN, Act = ActKind.GeluNew, Rotary = true, RotaryDim = 4, RotaryAdjacentPairs = true, ParallelAttnMlp = true }),
        ("neo-like", Basic(2) with { Normalization = NormKind.LN, Act = ActKind.GeluNew, UseAttnScale = false, AttnTypes = "global,local", WindowSize = 2 }),
        ("llama-like", Basic(2) with { Normalization = NormKind.RMS, Act = ActKind.Silu, GatedMlp = true, Rotary = true, RotaryDim = 4, NKeyValueHeads = 1 }),
        ("folded-lnpre", Basic(1) with { Normalization = NormKind.LNPre, Act = ActKind.GeluFast }),
        ("rmspre", Basic(1) with { Normalization = NormKind.RMSPre, Act = ActKind.GeluPytorchTanh }),
        ("final-rms", Basic(1) with { Normalization = NormKind.LN, FinalRms = true, Act = ActKind.Gelu }),
        ("inverse-layer-scale", Basic(2) with { ScaleAttnByInverseLayerIdx = true }),
        ("attn-scale-3", Basic(1) with { AttnScale = 3.0 }),
    ];

    public static IEnumerable<object[]> Names() => Table.Select(f => new object[] { f.Name });

    public static ModelConfig Get(string name) => Table.Single(f => f.Name == name).Config.Validated();
}
