#!/usr/bin/perl
# valgrind-errors.pl LOG...: reads valgrind's logs (--log-file) from a run of
# Test::Nginx with TEST_NGINX_USE_VALGRIND, which fails nothing for valgrind's
# reports itself. Fails (exit 1) when a report's
# stack passes through the module (TEST_NGINX_VALGRIND_MODULE, a regex, default
# shared_map), printing it; other reports (nginx's own, OpenSSL's) are counted
# and shown as notes.
use strict;
use warnings;

@ARGV or die "usage: $0 LOG...\n";
my $mine = $ENV{TEST_NGINX_VALGRIND_MODULE} || 'shared_map';
my $logs = join ' ', @ARGV;

# A report is a run of "==PID== " lines; a line with nothing after the prefix
# ends it. With --gen-suppressions=all each is followed by a {...} block, which
# carries no prefix and is skipped.
my (%open, @reports);
while (my $line = <>) {
    my ($pid, $text) = $line =~ /^==(\d+)== ?(.*)$/ or next;
    if ($text eq '') {
        push @reports, delete $open{$pid} if $open{$pid};
        next;
    }
    $open{$pid} .= "$text\n";
}
push @reports, values %open;

my ($bad, $other) = (0, 0);
for my $r (@reports) {
    # Only error and leak reports have stacks; valgrind's banner lines have none.
    next unless $r =~ /^\s+(?:at|by) 0x/m;
    if ($r =~ /$mine/) {
        $bad++;
        print STDERR "valgrind: an error in the module:\n$r\n";
    } else {
        $other++;
    }
}
print STDERR "valgrind: $other report(s) outside the module, in $logs\n" if $other;
print STDERR "valgrind: no report passes through the module\n" unless $bad;
exit($bad ? 1 : 0);
