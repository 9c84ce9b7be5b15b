package slot

import (
	"fmt"
	"testing"
)

func BenchmarkOf(b *testing.B) {
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = fmt.Sprintf("com.example.Service%d:1.0.0@DEFAULT_GROUP", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	sum := 0
	for i := 0; b.Loop(); i++ {
		sum += Of(ids[i%len(ids)])
	}
	_ = sum
}

// BenchmarkBalanceFromEmpty builds a 10-node, 3-replica table from nothing.
func BenchmarkBalanceFromEmpty(b *testing.B) {
	nodes := mkNodes("n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9")
	prev := NewTable(3)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Balance(prev, nodes, 3); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBalanceJoin adds a 10th node to a balanced 9-node table.
func BenchmarkBalanceJoin(b *testing.B) {
	nodes := mkNodes("n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9")
	prev := mustBalance(b, nil, nodes[:9], 3)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Balance(prev, nodes, 3); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBalanceNoChange re-balances an already balanced table, the
// common case when only an address changes.
func BenchmarkBalanceNoChange(b *testing.B) {
	nodes := mkNodes("n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9")
	prev := mustBalance(b, nil, nodes, 3)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Balance(prev, nodes, 3); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClone copies a 10-node, 3-replica table, which every move
// function does once.
func BenchmarkClone(b *testing.B) {
	tab := mustBalance(b, nil, mkNodes("n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9"), 3)
	b.ReportAllocs()
	for b.Loop() {
		_ = tab.Clone()
	}
}

// BenchmarkPlanMoves plans evening out a 10-node table after one join.
func BenchmarkPlanMoves(b *testing.B) {
	nodes := mkNodes("n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9")
	tab := mustBalance(b, mustBalance(b, nil, nodes[:9], 3), nodes, 3)
	b.ReportAllocs()
	for b.Loop() {
		if len(PlanMoves(tab, 0)) == 0 {
			b.Fatal("no moves")
		}
	}
}
