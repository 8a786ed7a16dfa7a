using System.Runtime.InteropServices;

namespace Verifier.Core;

/// <summary>The one check every command makes before it writes an output, with or without --force: the output,
/// resolved to its real location (every symbolic link on the way followed), must not be one of the command's
/// inputs or a file in an input directory (or, for a directory output, contain one: replacing the directory would delete it), must not be the
/// SQLite store or its -wal, -shm or -journal file, and, if something exists there, it must be a regular file
/// (a directory, for a directory output): never a device, a FIFO or a socket (<c>--out /dev/null</c>).</summary>
public static class OutputGuard
{
    /// <param name="option">The option that names the output (for the message), e.g. "--out".</param>
    /// <param name="inputs">Input files and directories of the command (null entries are skipped).</param>
    /// <param name="store">The SQLite store the command records to, if any.</param>
    public static void Check(string option, string output, bool directory, IEnumerable<string?> inputs, string? store = null)
    {
        string outReal = Resolve(output);
        var protectedPaths = new List<(string Path, string What)>();
        foreach (var i in inputs)
        {
            if (i is null) continue;
            protectedPaths.Add((Resolve(i), $"an input of this command ({i})"));
            // An input directory (a model, a crosscoder): every file in it is an input too.
            if (Directory.Exists(i))
                foreach (var f in Directory.EnumerateFiles(i))
                    protectedPaths.Add((Resolve(f), $"an input of this command ({f})"));
        }
        if (store is not null)
            foreach (var suffix in new[] { "", "-wal", "-shm", "-journal" })
                protectedPaths.Add((Resolve(store + suffix), $"the store{(suffix.Length > 0 ? $"'s {suffix} file" : "")} ({store}{suffix})"));
        foreach (var (p, what) in protectedPaths)
        {
            if (p == outReal || (directory && IsInside(p, outReal)))
                throw new UsageException($"{option} {Display.Escape(output)}: {(p == outReal ? "is" : "contains")} {Display.Escape(what)}; " +
                                         "an output must not replace an input or the store, --force or not");
        }
        var kind = Kind(outReal);
        if (kind is FileKind.None) return;
        if (directory ? kind is not FileKind.Directory : kind is not FileKind.Regular)
            throw new UsageException($"{option} {Display.Escape(output)}: {Display.Escape(outReal)} exists and is {Describe(kind)}, not {(directory ? "a directory" : "a regular file")}; " +
                                     "it is never replaced, --force or not");
    }

    static bool IsInside(string path, string dir) =>
        path.StartsWith(dir.EndsWith('/') ? dir : dir + Path.DirectorySeparatorChar, StringComparison.Ordinal);

    /// <summary>The absolute path with every symbolic link among its existing components followed (like
    /// realpath(3), except that components that do not exist yet are kept as written).</summary>
    public static string Resolve(string path)
    {
        string full = Path.GetFullPath(path);
        for (int hops = 0; hops < 64; hops++)
        {
            string root = Path.GetPathRoot(full)!;
            var parts = full[root.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries);
            string cur = root;
            string? next = null;
            for (int i = 0; i < parts.Length; i++)
            {
                cur = Path.Combine(cur, parts[i]);
                var info = new FileInfo(cur);
                if (info.LinkTarget is string target)
                {
                    string resolved = Path.GetFullPath(target, Path.GetDirectoryName(cur)!);
                    next = parts.Length > i + 1 ? Path.Combine(resolved, Path.Combine(parts[(i + 1)..])) : resolved;
                    break;
                }
                if (!info.Exists && !Directory.Exists(cur)) break;
            }
            if (next is null) return full.Length > root.Length ? full.TrimEnd(Path.DirectorySeparatorChar) : full;
            full = Path.GetFullPath(next);
        }
        throw new UsageException($"{Display.Escape(path)}: too many levels of symbolic links");
    }

    enum FileKind { None, Regular, Directory, Other, CharDevice, BlockDevice, Fifo, Socket }

    static string Describe(FileKind k) => k switch
    {
        FileKind.Regular => "a regular file", FileKind.Directory => "a directory", FileKind.CharDevice => "a character device",
        FileKind.BlockDevice => "a block device", FileKind.Fifo => "a FIFO", FileKind.Socket => "a socket", _ => "not a regular file",
    };

    static FileKind Kind(string path)
    {
        if (!File.Exists(path) && !Directory.Exists(path)) return FileKind.None;
        if (Directory.Exists(path)) return FileKind.Directory;
        if (!OperatingSystem.IsLinux()) return FileKind.Regular;
        // .NET reports devices, FIFOs and sockets as ordinary files; statx(2) gives the type (a stable kernel ABI).
        var buf = new byte[256];
        if (Statx(-100 /* AT_FDCWD */, path, 0, 1 /* STATX_TYPE */, buf) != 0)
            throw new IOException($"{path}: cannot stat ({Marshal.GetLastPInvokeError()})");
        int mode = BitConverter.ToUInt16(buf, 28) & 0xF000;
        return mode switch
        {
            0x8000 => FileKind.Regular, 0x4000 => FileKind.Directory, 0x2000 => FileKind.CharDevice,
            0x6000 => FileKind.BlockDevice, 0x1000 => FileKind.Fifo, 0xC000 => FileKind.Socket, _ => FileKind.Other,
        };
    }

    [DllImport("libc", EntryPoint = "statx", SetLastError = true)]
    static extern int Statx(int dirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, uint mask, byte[] buf);
}
