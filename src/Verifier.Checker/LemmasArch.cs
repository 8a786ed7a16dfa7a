using Verifier.Core;

namespace Verifier.Checker;

/// <summary>BF and BFB for every model that is not basic (proofs/R3-architectures.md): the same statements as
/// proofs/BF-brute-force.md, each sequence through <see cref="ArchForward"/> (R1 + R3) instead of the basic model's
/// forward passes. The basic paths (Forward.cs, Kernel.cs) are untouched; Lemmas.cs dispatches on C.IsBasic (BF reads
/// <see cref="Arch"/>'s SequenceInterval, BFB calls <see cref="BruteForceBlockArch"/>).</summary>
public sealed partial class TranscriptChecker
{
    /// <summary>The forward pass of every architecture, built on first use.</summary>
    ArchForward Arch => _arch ??= new ArchForward(_w);
    ArchForward? _arch;

    /// <summary>BFB: the block's sequences on every core, each certified alone; the upper ends summed in index order, so
    /// the certified value does not depend on scheduling.</summary>
    Info BruteForceBlockArch(Step s, int first, int end)
    {
        var arch = Arch;
        var loss = new double[end - first]; var wrong = new int[end - first];
        var seqs = _data.Sequences;
        OnWorkers(() => Parallel.For(first, end, i => (loss[i - first], wrong[i - first]) = arch.Sequence(seqs[i])));
        return CertifyBlock(s, first, end, loss, wrong);
    }
}
