// Marks one version requirement of an ELF64 shared library as weak (VER_FLG_WEAK on its Vernaux
// entry), so that the dynamic loader accepts the library where the system's libstdc++ lacks that
// version. Used by build/TorchSharpGlibcxx.targets as an MSBuild inline task, and compiled into
// tests/Verifier.Model.Tests (with ELF_PATCHER_NO_MSBUILD) so that the same code is unit-tested.
//
// Why this is safe for libLibTorchSharp.so and GLIBCXX_3.4.32: the only symbol bound to that
// version is std::ios_base_library_init(), which the library never calls. A weak version
// requirement that is missing is skipped by ld.so; present, it binds as usual.
using System;
using System.Collections.Generic;
using System.IO;
using System.Text;

namespace Verifier.Build
{
    public static class ElfWeakVersion
    {
        public const ushort VerFlgWeak = 0x2;
        const uint ShtGnuVerneed = 0x6ffffffe;

        /// <summary>One Vernaux entry: which library needs which version, with its flags and file offset.</summary>
        public sealed class Requirement
        {
            public string File = "";
            public string Version = "";
            public ushort Flags;
            public long FlagsOffset;
        }

        /// <summary>Every version requirement (Verneed/Vernaux) of an ELF64 little-endian file.</summary>
        public static List<Requirement> ReadRequirements(byte[] elf, string path)
        {
            if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
                throw new InvalidDataException(path + ": not an ELF file");
            if (elf[4] != 2 || elf[5] != 1)
                throw new InvalidDataException(path + ": only ELF64 little-endian is supported");
            long shoff = checked((long)U64(elf, 0x28));
            int shentsize = U16(elf, 0x3A), shnum = U16(elf, 0x3C);
            var result = new List<Requirement>();
            for (int i = 0; i < shnum; i++)
            {
                long sh = checked(shoff + (long)i * shentsize);
                Need(elf, sh, 64, path, "section header");
                if (U32(elf, sh + 4) != ShtGnuVerneed) continue;
                long off = checked((long)U64(elf, sh + 24));
                int link = (int)U32(elf, sh + 40);
                uint count = U32(elf, sh + 44);
                long strSh = checked(shoff + (long)link * shentsize);
                Need(elf, strSh, 64, path, "string table header");
                long strOff = checked((long)U64(elf, strSh + 24));
                long vn = off;
                for (uint n = 0; n < count; n++)
                {
                    Need(elf, vn, 16, path, "Verneed");
                    int cnt = U16(elf, vn + 2);
                    string file = Str(elf, strOff + U32(elf, vn + 4), path);
                    long aux = vn + U32(elf, vn + 8);
                    for (int a = 0; a < cnt; a++)
                    {
                        Need(elf, aux, 16, path, "Vernaux");
                        result.Add(new Requirement
                        {
                            File = file,
                            Version = Str(elf, strOff + U32(elf, aux + 8), path),
                            Flags = (ushort)U16(elf, aux + 4),
                            FlagsOffset = aux + 4,
                        });
                        uint next = U32(elf, aux + 12);
                        if (next == 0) break;
                        aux += next;
                    }
                    uint vnNext = U32(elf, vn + 12);
                    if (vnNext == 0) break;
                    vn += vnNext;
                }
            }
            return result;
        }

        /// <summary>Sets VER_FLG_WEAK on the requirement of <paramref name="version"/>. Returns false when
        /// the file has no such requirement or it is already weak. Writes through a temporary file and a
        /// rename, so a hard link into the NuGet cache is never modified in place.</summary>
        public static bool MarkWeak(string path, string version)
        {
            byte[] elf = File.ReadAllBytes(path);
            bool changed = false;
            foreach (var r in ReadRequirements(elf, path))
            {
                if (r.Version != version || (r.Flags & VerFlgWeak) != 0) continue;
                ushort flags = (ushort)(r.Flags | VerFlgWeak);
                elf[r.FlagsOffset] = (byte)(flags & 0xff);
                elf[r.FlagsOffset + 1] = (byte)(flags >> 8);
                changed = true;
            }
            if (!changed) return false;
            string tmp = path + ".weak-tmp";
            File.WriteAllBytes(tmp, elf);
            File.Delete(path); // unlink first: never write through a hard link
            File.Move(tmp, path);
            return true;
        }

        /// <summary>True when a libstdc++.so.6 on the loader's usual paths defines <paramref name="version"/>;
        /// false when none does or none is found.</summary>
        public static bool SystemLibstdcxxHas(string version)
        {
            var dirs = new List<string>();
            string ld = Environment.GetEnvironmentVariable("LD_LIBRARY_PATH") ?? "";
            if (!string.IsNullOrEmpty(ld)) dirs.AddRange(ld.Split(':'));
            dirs.AddRange(new[]
            {
                "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu",
                "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib",
                "/usr/local/lib64", "/usr/local/lib",
            });
            byte[] needle = Encoding.ASCII.GetBytes(version + "\0");
            foreach (string dir in dirs)
            {
                if (dir.Length == 0) continue;
                string lib = Path.Combine(dir, "libstdc++.so.6");
                if (!File.Exists(lib)) continue;
                byte[] bytes = File.ReadAllBytes(lib);
                if (IndexOf(bytes, needle) >= 0) return true;
            }
            return false;
        }

        static int IndexOf(byte[] hay, byte[] needle)
        {
            for (int i = 0; i + needle.Length <= hay.Length; i++)
            {
                int j = 0;
                while (j < needle.Length && hay[i + j] == needle[j]) j++;
                if (j == needle.Length) return i;
            }
            return -1;
        }

        static void Need(byte[] b, long off, int len, string path, string what)
        {
            if (off < 0 || off + len > b.Length)
                throw new InvalidDataException(path + ": " + what + " at offset " + off + " lies outside the file");
        }

        static string Str(byte[] b, long off, string path)
        {
            Need(b, off, 1, path, "string");
            int end = (int)off;
            while (end < b.Length && b[end] != 0) end++;
            return Encoding.ASCII.GetString(b, (int)off, end - (int)off);
        }

        static int U16(byte[] b, long o) => b[o] | (b[o + 1] << 8);
        static uint U32(byte[] b, long o) => (uint)(b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24));
        static ulong U64(byte[] b, long o) => U32(b, o) | ((ulong)U32(b, o + 4) << 32);
    }

#if !ELF_PATCHER_NO_MSBUILD
    /// <summary>MSBuild task: weakens <c>Version</c> in each of <c>Files</c> when the system libstdc++ lacks it.</summary>
    public sealed class MarkElfVersionWeak : Microsoft.Build.Utilities.Task
    {
        [Microsoft.Build.Framework.Required] public Microsoft.Build.Framework.ITaskItem[] Files { get; set; } = Array.Empty<Microsoft.Build.Framework.ITaskItem>();
        [Microsoft.Build.Framework.Required] public string Version { get; set; } = "";

        public override bool Execute()
        {
            if (ElfWeakVersion.SystemLibstdcxxHas(Version))
            {
                Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Low, "System libstdc++ has " + Version + "; no patch needed.");
                return true;
            }
            foreach (var item in Files)
            {
                string path = item.ItemSpec;
                if (!File.Exists(path)) continue;
                try
                {
                    bool changed = ElfWeakVersion.MarkWeak(path, Version);
                    Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Normal,
                        (changed ? "Marked " : "Already weak or not required: ") + Version + " in " + path);
                }
                catch (Exception e)
                {
                    Log.LogError("Could not mark " + Version + " weak in " + path + ": " + e.Message);
                    return false;
                }
            }
            return true;
        }
    }
#endif
}
