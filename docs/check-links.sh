#!/bin/sh
#! Checks the relative Markdown links of README.md and docs/*.md: every
#! linked file exists, and every #anchor names a heading of its file
#! (GitHub's rule: lower case, punctuation dropped, spaces to hyphens).
#! Usage: docs/check-links.sh [FILE.md ...]; exits 1 on a broken link.
set -eu
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- README.md docs/*.md CHANGELOG.md
exec perl -e '
use strict; use warnings;
use File::Basename qw(dirname);
my %anchors;
sub anchors {
    my ($file) = @_;
    return $anchors{$file} if $anchors{$file};
    my %seen; my %a; my $fence = 0;
    open my $fh, "<", $file or return $anchors{$file} = {};
    while (<$fh>) {
        if (/^\s*(```|~~~)/) { $fence = !$fence; next }
        next if $fence;
        next unless /^#{1,6}\s+(.*?)\s*#*\s*$/;
        my $id = lc $1;
        $id =~ s/\[([^\]]*)\]\([^)]*\)/$1/g;   # a link keeps its text
        $id =~ s/[^\w\- ]//g;                  # punctuation, backquotes
        $id =~ s/ /-/g;
        my $n = $seen{$id}++;
        $a{$n ? "$id-$n" : $id} = 1;
    }
    return $anchors{$file} = \%a;
}
my $bad = 0;
for my $file (@ARGV) {
    open my $fh, "<", $file or die "$file: $!\n";
    my $fence = 0;
    while (my $line = <$fh>) {
        my $n = $.;
        if ($line =~ /^\s*(```|~~~)/) { $fence = !$fence; next }
        next if $fence;
        $line =~ s/`[^`]*`//g;                 # code spans hold no links
        while ($line =~ /\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g) {
            my $target = $1;
            next if $target =~ m{^[a-z][a-z0-9+.-]*:}i;   # http:, mailto:
            my ($path, $anchor) = $target =~ /^([^#]*)(?:#(.*))?$/;
            my $dest = $path eq "" ? $file : dirname($file) . "/" . $path;
            if (!-e $dest) {
                print "$file:$n: $target: no such file\n"; $bad = 1; next;
            }
            next unless defined $anchor;
            if ($dest !~ /\.md$/ or !anchors($dest)->{$anchor}) {
                print "$file:$n: $target: no such anchor\n"; $bad = 1;
            }
        }
    }
    close $fh;
}
exit $bad;
' "$@"
