namespace Verifier.Core;

/// <summary>ACC: accuracy ≥ (P − ⌊errors⌋)/P, the quotient rounded down exactly (both counts are integers below 2⁵³).</summary>
public static class Accuracy
{
    public static double Lower(double errors, long positions)
    {
        double right = Math.Max(0, positions - Math.Floor(errors));
        double q = right / positions;
        return Math.FusedMultiplyAdd(q, positions, -right) > 0 ? Math.BitDecrement(q) : q;
    }
}
