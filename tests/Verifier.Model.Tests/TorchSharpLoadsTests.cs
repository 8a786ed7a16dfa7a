using TorchSharp;
using Verifier.Build;
using static TorchSharp.torch;

namespace Verifier.Model.Tests;

public class TorchSharpLoadsTests
{
    [Fact]
    public void TorchSharp_loads_and_multiplies()
    {
        using var a = tensor(new double[] { 1, 2, 3, 4 }, [2, 2], ScalarType.Float64);
        using var b = tensor(new double[] { 5, 6, 7, 8 }, [2, 2], ScalarType.Float64);
        using var c = a.matmul(b);
        Assert.Equal(new double[] { 19, 22, 43, 50 }, c.data<double>().ToArray());
    }

    static string OutputLibrary => Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");

    [Fact]
    public void Build_marks_GLIBCXX_3_4_32_weak_exactly_when_the_system_lacks_it()
    {
        if (!OperatingSystem.IsLinux()) return;
        Assert.True(File.Exists(OutputLibrary), $"{OutputLibrary} was not copied to the test output");
        var reqs = ElfWeakVersion.ReadRequirements(File.ReadAllBytes(OutputLibrary), OutputLibrary);
        var glibcxx = Assert.Single(reqs, r => r.Version == "GLIBCXX_3.4.32");
        bool weak = (glibcxx.Flags & ElfWeakVersion.VerFlgWeak) != 0;
        Assert.Equal(!ElfWeakVersion.SystemLibstdcxxHas("GLIBCXX_3.4.32"), weak);
        Assert.Equal("libstdc++.so.6", glibcxx.File);
    }

    [Fact]
    public void Patcher_changes_only_the_flags_of_the_named_version_and_is_idempotent()
    {
        if (!OperatingSystem.IsLinux()) return;
        string tmp = Path.Combine(Path.GetTempPath(), $"elf-{Guid.NewGuid():N}.so");
        File.Copy(OutputLibrary, tmp);
        try
        {
            // Start from an unpatched copy: clear the weak bit if the build set it.
            var before = File.ReadAllBytes(tmp);
            var req = ElfWeakVersion.ReadRequirements(before, tmp).Single(r => r.Version == "GLIBCXX_3.4.32");
            before[req.FlagsOffset] &= unchecked((byte)~ElfWeakVersion.VerFlgWeak);
            File.WriteAllBytes(tmp, before);

            Assert.True(ElfWeakVersion.MarkWeak(tmp, "GLIBCXX_3.4.32"));
            var after = File.ReadAllBytes(tmp);
            Assert.Equal(before.Length, after.Length);
            var changed = Enumerable.Range(0, before.Length).Where(i => before[i] != after[i]).ToList();
            Assert.Equal([(int)req.FlagsOffset], changed);
            Assert.Equal(ElfWeakVersion.VerFlgWeak, after[req.FlagsOffset] & ElfWeakVersion.VerFlgWeak);
            var others = ElfWeakVersion.ReadRequirements(after, tmp).Where(r => r.Version != "GLIBCXX_3.4.32");
            Assert.All(others, r => Assert.Equal(0, r.Flags & ElfWeakVersion.VerFlgWeak));

            Assert.False(ElfWeakVersion.MarkWeak(tmp, "GLIBCXX_3.4.32"));
            Assert.Equal(after, File.ReadAllBytes(tmp));
        }
        finally { File.Delete(tmp); }
    }

    [Fact]
    public void Patcher_refuses_a_file_that_is_not_ELF()
    {
        var e = Assert.Throws<InvalidDataException>(() => ElfWeakVersion.ReadRequirements(new byte[100], "x.so"));
        Assert.Contains("x.so", e.Message);
    }
}
