using Verifier.Core;

namespace Verifier.Bounds;

/// <summary>Brute force for a non-basic model (proofs/BF-brute-force.md with the enclosures of
/// proofs/R3G-generator-enclosures.md): <see cref="BruteForceStrategy"/> writes the same transcript (one BFB step per block
/// of consecutive sequences, then MEAN); here each sequence's forward pass runs in scalar R1 arithmetic
/// (<see cref="ArchForward"/>) on every core through BruteForceStrategy's block runner, and the block's sum is taken in
/// sequence order.</summary>
public static class ArchBruteForce
{
    /// <summary>Sequences [first, end): the summed upper ends, the uncertified positions and the FLOPs of the block.</summary>
    public static (double Sum, int Errors, long Flops) Block(ArchForward model, ModelConfig c, IReadOnlyList<Sequence> data, int first, int end,
        double[] loss, int[] wrong, CancellationToken ct) =>
        BruteForceStrategy.Block<object?>(c, data, first, end, loss, wrong, minChunk: 1, () => null, (seq, _) => model.Sequence(seq), ct);
}
