using System.Runtime.InteropServices;

namespace Verifier.Model;

/// <summary>glibc malloc hands every block above its mmap threshold (at most 32 MiB) straight back to the
/// kernel when freed and trims the heap top eagerly, so each training step's large temporaries (a
/// [4096 × 2048] float32 feature matrix is 32 MiB) are page-faulted in afresh: measured, that more than
/// doubles a crosscoder step on 2 cores. Raising the mmap and trim thresholds keeps that memory in the
/// process for reuse. Performance only; results are unchanged. A no-op off glibc.</summary>
public static partial class NativeAllocator
{
    const int MTrimThreshold = -1, MTopPad = -2, MMmapThreshold = -3;

    [LibraryImport("libc", EntryPoint = "mallopt")]
    private static partial int Mallopt(int param, int value);

    /// <summary>Returns true when the allocator accepted the settings.</summary>
    public static bool KeepLargeBlocks()
    {
        if (!OperatingSystem.IsLinux()) return false;
        try
        {
            return Mallopt(MMmapThreshold, 1 << 30) == 1 & Mallopt(MTrimThreshold, int.MaxValue) == 1 & Mallopt(MTopPad, 64 << 20) == 1;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;   // not glibc (e.g. musl): nothing to tune
        }
    }
}
